"""Hypothesis strategies for hostile input: arbitrary JSON, counts of every wrong kind, text that breaks formats."""

from __future__ import annotations

from typing import Any, Literal

from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
COUNTS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=5), st.none())
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
HOSTILE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=SURROGATES)
    | st.sampled_from(["\n", '"', "\\", "\x00", "\r"]),
    min_size=1,
    max_size=300,
)


def job_like() -> st.SearchStrategy[dict[str, Any]]:
    counts = st.fixed_dictionaries({}, optional={k: COUNTS for k in ("Total", "Success", "Failed", "Skipped")})
    stats = st.dictionaries(st.sampled_from(["Created", "Deleted", "Pushed", "Weird"]), counts | JSON, max_size=3)
    result = st.dictionaries(
        st.sampled_from(["UserStatistics", "GroupStatistics", "ErrorCode", "Other", "Statistics"]),
        stats | JSON,
        max_size=4,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "SynchronizationJobId": st.text(max_size=50) | JSON,
            "TargetType": st.sampled_from(["application", "identity_provider"]) | JSON,
            "TargetId": HOSTILE_TEXT | JSON,
            "Direction": st.sampled_from(["ingress", "egress"]),
            "Status": st.sampled_from(["success", "running", "failed", "bogus"]) | JSON,
            "StartTime": st.integers(min_value=-5, max_value=10**15) | JSON,
            "EndTime": st.integers(min_value=-5, max_value=10**15) | JSON,
            "TriggerType": st.sampled_from(["auto", "manual"]) | JSON,
            "Result": result | JSON,
        },
    )
