"""The dry run decides every user exactly as the sidecar's scalar ``decide`` does.

Property tests: random rules files (through the real loader) and random users; the engine's
counts, rules and moved users must equal what ``decide`` says user by user.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.core.decide import decide
from extproc.core.loader import parse_rules
from extproc.core.model import Cohort, Rules
from extproc.diff import catalog
from extproc.diff.engine import DOWN, UP, run_diff
from extproc.diff.population import Group, ListPopulation, SyntheticPopulation

REGIONS = ["eu-west", "EU-West", "us-east", "cn-north", None]
DEVICES = ["ios-17", "iOS-18", "android-14", "android-1", "web", None]
IDS = [f"u{i}" for i in range(40)] + ["qa-1", "qa-2", "vip-1"]
GLOBS = ["ios-*", "android-1?", "web", "*-1[0-9]"]


def share() -> st.SearchStrategy[str]:
    return st.integers(0, 10_000).map(lambda b: f"{b / 100:.2f}%")


@st.composite
def rules_text(draw: st.DrawFn, salt: str | None = None) -> bytes:
    salt = salt or draw(st.sampled_from(["s1", "s2"]))
    forced = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=4))
    cut = draw(st.integers(0, len(forced)))
    lines = [
        f"rollout: {{name: r, salt: {salt}, share: '{draw(share())}', "
        f"kill_switch: {str(draw(st.integers(0, 9)) == 0).lower()}}}",
        f"identity: {{when_missing: {draw(st.sampled_from(['v1', 'v2']))}, "
        f"max_key_bytes: {draw(st.sampled_from([3, 8, 256]))}}}",
    ]
    if forced:
        v2, v1 = forced[:cut], forced[cut:]
        lines.append("force: {" + ", ".join(
            f"{c}: [{', '.join(ids)}]" for c, ids in (("v2", v2), ("v1", v1)) if ids
        ) + "}")  # fmt: skip
    rules = draw(st.lists(st.integers(0, 2**20), max_size=4))
    if rules:
        lines.append("rules:")
    for i, seed in enumerate(rules):
        when = []
        if seed & 1:
            picked = [r for j, r in enumerate(REGIONS[:4]) if seed >> (1 + j) & 1] or ["us-east"]
            when.append(f"region: [{', '.join(picked)}]")
        if seed & 32 or not when:
            when.append(f"device: '{GLOBS[seed >> 6 & 3]}'")
        if seed & 256:
            when.append("headers: {x-channel: [beta]}")
        action = (
            f"cohort: v{1 + (seed >> 9 & 1)}" if seed & 1024 else f"share: '{(seed >> 11) % 101}%'"
        )
        lines.append(f"  - {{name: r{i}, when: {{{', '.join(when)}}}, {action}}}")
    return ("\n".join(lines) + "\n").encode()


@st.composite
def users(draw: st.DrawFn) -> tuple[list[str], list[Group]]:
    ids = draw(
        st.lists(
            st.one_of(
                st.sampled_from(IDS),
                st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
            ),
            unique=True,
            min_size=1,
            max_size=60,
        )
    )
    groups = [
        Group(
            draw(st.sampled_from(REGIONS)),
            draw(st.sampled_from(DEVICES)),
            draw(st.sampled_from([(), (("x-channel", "beta"),), (("x-channel", "alpha"),)])),
        )
        for _ in ids
    ]
    return ids, groups


def scalar(rules: Rules, user_id: str, group: Group) -> tuple[bool, str]:
    headers = group.request_headers("x-region", "x-device-model")
    if user_id:
        headers["x-user-id"] = user_id
    d = decide(rules, headers)
    return d.cohort is Cohort.V2, d.rule


def engine_and_scalar(old: Rules, new: Rules, ids: list[str], groups: list[Group]) -> None:
    distinct = list(dict.fromkeys(groups))
    population = ListPopulation(ids, [distinct.index(g) for g in groups], distinct, chunk=7)
    diff = run_diff(old, new, population, lambda key: key, sample=len(ids))
    want: Counter[tuple[Group, str, str, bool, bool]] = Counter()
    moved: dict[str, list[str]] = {UP: [], DOWN: []}
    for user_id, group in zip(ids, groups, strict=True):
        (o, o_rule), (n, n_rule) = scalar(old, user_id, group), scalar(new, user_id, group)
        want[group, o_rule, n_rule, o, n] += 1
        if o != n:
            moved[UP if n else DOWN].append(user_id)
    got = Counter(
        {
            (distinct[c.group], c.old_rule, c.new_rule, c.old_v2, c.new_v2): k
            for c, k in diff.cells.items()
        }
    )
    assert got == want
    for direction in (UP, DOWN):
        assert sorted(diff.samples[direction]) == sorted(moved[direction])
        assert diff.moved(direction) == len(moved[direction])
    assert diff.users == len(ids)


@settings(max_examples=200, deadline=None)
@given(old=rules_text(), new=rules_text(), population=users())
def test_every_user_is_decided_as_the_sidecar_decides(
    old: bytes, new: bytes, population: tuple[list[str], list[Group]]
) -> None:
    engine_and_scalar(parse_rules("old.yaml", old), parse_rules("new.yaml", new), *population)


@settings(max_examples=30, deadline=None)
@given(old=rules_text(salt="s1"), new=rules_text(salt="s1"), start=st.integers(0, 10**7))
def test_synthetic_users_are_decided_as_the_sidecar_decides(
    old: bytes, new: bytes, start: int
) -> None:
    """Synthetic ids cross a digit-count boundary within one chunk (9 -> 10, 99 -> 100)."""
    r_old, r_new = parse_rules("old.yaml", old), parse_rules("new.yaml", new)
    headers = catalog.headers([r_old, r_new])
    population = SyntheticPopulation(120, REGIONS, DEVICES, chunk=50, headers=headers)
    diff = run_diff(r_old, r_new, population, lambda key: key, sample=120)
    moved: dict[str, list[str]] = {UP: [], DOWN: []}
    for i in range(120):
        user_id, g = population.user(i)
        (o, _), (n, _) = (
            scalar(r_old, user_id, population.groups[g]),
            scalar(r_new, user_id, population.groups[g]),
        )
        if o != n:
            moved[UP if n else DOWN].append(user_id)
    assert {d: sorted(diff.samples[d]) for d in (UP, DOWN)} == {
        d: sorted(m) for d, m in moved.items()
    }


def test_a_synthetic_user_keeps_its_group_whatever_the_chunking() -> None:
    small = SyntheticPopulation(1000, REGIONS, DEVICES, chunk=37)
    large = SyntheticPopulation(1000, REGIONS, DEVICES)
    groups_small = [g for c in small.chunks() for g in c.group.tolist()]
    groups_large = [g for c in large.chunks() for g in c.group.tolist()]
    assert groups_small == groups_large == [small.user(i)[1] for i in range(1000)]
    assert set(groups_large) == set(range(len(small.groups)))  # every group gets users


def test_synthetic_ids_are_located_only_in_range() -> None:
    population = SyntheticPopulation(100, REGIONS, DEVICES)
    wanted = {"user-0", "user-99", "user-100", "user-07", "user-x", "qa-1", "user-"}
    assert population.locate(wanted) == {"user-0": 0, "user-99": 99}


def test_the_synthetic_catalog_covers_header_rules() -> None:
    rules = parse_rules(
        "r.yaml",
        b"""rollout: {name: r, salt: s, share: 10%}
rules:
  - {name: beta, when: {headers: {x-channel: [beta, canary]}}, share: 50%}
  - {name: app, when: {headers: {x-app: {regex: "tts-.*"}, x-channel: [beta]}}, cohort: v2}
""",
    )
    combos = catalog.headers([rules])
    assert (("x-channel", "beta"),) in combos and (("x-channel", "canary"),) in combos
    assert () in combos and len(combos) == 3  # x-app: a regex adds no value, only "absent"
