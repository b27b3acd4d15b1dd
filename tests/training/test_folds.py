from l2s_training.data.folds import fold_of, split

IDS = [f"PETCT_{i:04d}_study" for i in range(23)]


def test_folds_are_deterministic_balanced_and_order_free():
    a, b = fold_of(IDS), fold_of(list(reversed(IDS)))
    assert a == b
    sizes = [sum(1 for f in a.values() if f == k) for k in range(5)]
    assert sorted(sizes) == [4, 4, 5, 5, 5]


def test_split_partitions_the_cases():
    held = []
    for k in range(5):
        train, val = split(IDS, k)
        assert set(train).isdisjoint(val) and set(train) | set(val) == set(IDS)
        held += val
    assert sorted(held) == sorted(IDS)
    assert split(IDS, -1) == (IDS, [])
