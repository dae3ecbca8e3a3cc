"""bnorm.torch.SyncBatchNorm over torch.distributed (gloo, CPU processes) equals one process
holding the whole batch: outputs, input gradients, summed parameter gradients, running
statistics; uneven batches, an empty rank and a sub-group included."""

import os
import tempfile

import pytest

from torch_helpers import bt, max_abs, torch

nn = torch.nn
dist = pytest.importorskip("torch.distributed")

CHANNELS = 3
WORLD = 3
# (ranks in the group, samples per rank in that group)
SCENARIOS = {
    "world_uneven_with_empty_rank": ([0, 1, 2], [4, 0, 3]),
    "subgroup_of_two": ([0, 2], [2, 3]),
}


def global_batch(total, fmt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(total, CHANNELS, 3, 2, generator=g, dtype=torch.float64) * 2 + 1
    dy = torch.randn(total, CHANNELS, 3, 2, generator=g, dtype=torch.float64)
    return x.contiguous(memory_format=fmt), dy.contiguous(memory_format=fmt)


def make_module(cls, group=None):
    m = cls(CHANNELS, momentum=0.3, process_group=group) if cls is bt.SyncBatchNorm else cls(
        CHANNELS, momentum=0.3)
    m = m.double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return m


def worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    groups = {name: dist.new_group(ranks) for name, (ranks, _) in SCENARIOS.items()}
    results = {}
    for name, (ranks, sizes) in SCENARIOS.items():
        if rank not in ranks:
            continue
        index = ranks.index(rank)
        start, stop = sum(sizes[:index]), sum(sizes[:index + 1])
        for fmt_name, fmt in (("contiguous", torch.contiguous_format),
                              ("channels_last", torch.channels_last)):
            x, dy = global_batch(sum(sizes), fmt, seed=len(name))
            m = make_module(bt.SyncBatchNorm, groups[name])
            for step in range(2):  # twice: the running statistics accumulate
                xs = x[start:stop].clone().contiguous(memory_format=fmt).requires_grad_()
                y = m(xs)
                y.backward(dy[start:stop].contiguous(memory_format=fmt))
            results[(name, fmt_name)] = {
                "y": y.detach(), "dx": xs.grad, "dweight": m.weight.grad / 2,
                "dbias": m.bias.grad / 2, "running_mean": m.running_mean.clone(),
                "running_var": m.running_var.clone(), "layout_kept": y.is_contiguous(
                    memory_format=fmt), "batches": m.num_batches_tracked.item()}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.parametrize("fmt_name", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sync_equals_one_process_with_the_whole_batch(rank_results, name, fmt_name):
    ranks, sizes = SCENARIOS[name]
    fmt = torch.contiguous_format if fmt_name == "contiguous" else torch.channels_last
    x, dy = global_batch(sum(sizes), fmt, seed=len(name))
    reference = make_module(nn.BatchNorm2d)
    for step in range(2):
        xr = x.clone().requires_grad_()
        y = reference(xr)
        y.backward(dy)
    dweight = torch.zeros(CHANNELS, dtype=torch.float64)
    dbias = torch.zeros(CHANNELS, dtype=torch.float64)
    for index, rank in enumerate(ranks):
        r = rank_results[rank][(name, fmt_name)]
        start, stop = sum(sizes[:index]), sum(sizes[:index + 1])
        assert r["y"].shape[0] == sizes[index]
        assert max_abs(r["y"], y[start:stop]) <= 1e-12
        assert max_abs(r["dx"], xr.grad[start:stop]) <= 1e-12
        assert r["layout_kept"] or sizes[index] == 0  # an empty tensor is any layout
        # Running statistics: identical on every rank, equal to the whole batch's.
        assert max_abs(r["running_mean"], reference.running_mean) <= 1e-12
        assert max_abs(r["running_var"], reference.running_var) <= 1e-12
        assert r["batches"] == 2
        dweight += r["dweight"]
        dbias += r["dbias"]
    # Parameter gradients are per-rank sums (DistributedDataParallel averages them).
    assert max_abs(dweight, reference.weight.grad / 2) <= 1e-11
    assert max_abs(dbias, reference.bias.grad / 2) <= 1e-11


def test_without_a_process_group_it_is_batch_norm():
    torch.manual_seed(0)
    ours, theirs = make_module(bt.SyncBatchNorm), make_module(nn.BatchNorm2d)
    x = torch.randn(4, CHANNELS, 3, 3, dtype=torch.float64)
    assert max_abs(ours(x), theirs(x)) <= 1e-12
    assert max_abs(ours.running_var, theirs.running_var) <= 1e-12


def test_convert_sync_batchnorm_keeps_state():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), bt.BatchNorm2d(3))
    model(torch.randn(2, 3, 4, 4))
    before = model[1].running_mean.clone()
    converted = bt.SyncBatchNorm.convert_sync_batchnorm(model)
    assert type(converted[1]) is bt.SyncBatchNorm and type(converted[2]) is bt.SyncBatchNorm
    assert torch.equal(converted[1].running_mean, before)
    assert converted[1].weight is model[1].weight
