from __future__ import annotations

from idaas_sync_exporter.api.flatten import flatten, unflatten


def test_lists_objects_and_nesting() -> None:
    flat = flatten(
        {
            "InstanceId": "idaas_1",
            "TargetIds": ["idp_111", "idp_222"],
            "Filters": [{"Key": "status", "Values": ["success", "failed"]}],
            "PullProtectedRule": {"UserDeletedThreshold": 10},
            "PeriodicSyncConfig": {"PeriodicSyncTimes": [3, 15]},
            "UdSyncScopeConfig": {"SourceScopes": ["ou_a", "ou_b"]},
        }
    )
    assert flat == {
        "InstanceId": "idaas_1",
        "TargetIds.1": "idp_111",
        "TargetIds.2": "idp_222",
        "Filters.1.Key": "status",
        "Filters.1.Values.1": "success",
        "Filters.1.Values.2": "failed",
        "PullProtectedRule.UserDeletedThreshold": "10",
        "PeriodicSyncConfig.PeriodicSyncTimes.1": "3",
        "PeriodicSyncConfig.PeriodicSyncTimes.2": "15",
        "UdSyncScopeConfig.SourceScopes.1": "ou_a",
        "UdSyncScopeConfig.SourceScopes.2": "ou_b",
    }


def test_sdk_scalar_rules() -> None:
    # None skipped but consumes its index; booleans as Python writes them; "" kept.
    assert flatten({"L": ["a", None, "b"], "B": True, "E": "", "N": None, "Empty": []}) == {
        "L.1": "a",
        "L.3": "b",
        "B": "True",
        "E": "",
    }


def test_unflatten_inverts_flatten() -> None:
    nested = {
        "InstanceId": "i",
        "Filters": [{"Key": "k", "Values": ["1", "2"]}],
        "PeriodicSyncConfig": {"PeriodicSyncType": "time", "PeriodicSyncTimes": ["3", "5"]},
    }
    assert unflatten(flatten(nested)) == nested


def test_unflatten_orders_list_indexes_numerically() -> None:
    flat = {f"TargetIds.{i}": f"t{i}" for i in (10, 2, 1)}
    assert unflatten(flat) == {"TargetIds": ["t1", "t2", "t10"]}
