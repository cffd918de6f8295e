"""`seq2seq.compat`: the behaviour of each dependency's private API we rely on, pinned; and no use of one elsewhere.

An upgrade that renames or changes one of these fails here, in CI, instead of silently in a user's run.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import re
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from sacrebleu.metrics import BLEU, CHRF
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seq2seq import compat

ROOT = Path(__file__).resolve().parents[1]

# --- torch ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [nn.RNN, nn.LSTM, nn.GRU])
def test_rnn_flat_weights_are_the_named_weights_and_what_forward_uses(cell):
    torch.manual_seed(0)
    rnn = cell(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    # _flat_weights holds the parameters themselves, in _flat_weights_names order
    assert len(rnn._flat_weights) == len(rnn._flat_weights_names) > 0
    assert all(w is getattr(rnn, name) for w, name in zip(rnn._flat_weights, rnn._flat_weights_names))
    x = torch.randn(2, 5, 3, dtype=torch.float64)  # (B, T, in)
    reference = copy.deepcopy(rnn).double()(x)[0]

    with compat.rnn_weights_cast(rnn, torch.float64):
        output = rnn(x)[0]  # float64 weights: a float32 forward would refuse the float64 input
    assert output.dtype == torch.float64
    torch.testing.assert_close(output, reference)
    output.sum().backward()  # the cast weights stay in the graph: the float32 parameters get gradients
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in rnn.parameters())
    assert all(w is getattr(rnn, name) for w, name in zip(rnn._flat_weights, rnn._flat_weights_names))


def test_rnn_weights_cast_restores_the_weights_after_an_error():
    rnn = nn.GRU(3, 4)
    weights = list(rnn._flat_weights)
    with pytest.raises(RuntimeError, match="boom"), compat.rnn_weights_cast(rnn, torch.float64):
        raise RuntimeError("boom")
    assert all(a is b for a, b in zip(rnn._flat_weights, weights))


def test_foreach_ops_equal_their_per_tensor_ops():
    torch.manual_seed(0)
    tensors = [torch.randn(3), torch.randn(2, 2)]
    others = [torch.randn(3), torch.randn(2, 2)]
    for scalar in (0.25, torch.tensor(0.25)):  # the EMA passes a 0-d tensor, the accumulation a float
        copied = [t.clone() for t in tensors]
        compat.foreach_mul_(copied, scalar)
        assert all(torch.equal(c, t * 0.25) for c, t in zip(copied, tensors))
        products = compat.foreach_mul(tensors, scalar)
        assert all(torch.equal(p, t * 0.25) for p, t in zip(products, tensors))
    summed = [t.clone() for t in tensors]
    compat.foreach_add_(summed, others)
    assert all(torch.equal(s, t + o) for s, t, o in zip(summed, tensors, others))
    counters = [torch.zeros(2, dtype=torch.long)]
    compat.foreach_copy_(counters, [torch.tensor([3, 4])])
    assert counters[0].tolist() == [3, 4]


# --- Lightning -----------------------------------------------------------------------------------------------------


class Tiny(L.LightningModule):
    """A linear model on random data that records what the compat functions say during ``training_step``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: list[tuple[int, int, bool, object]] = []  # (epoch, batch_idx, will_accumulate, trainer)

    def training_step(self, batch, batch_idx):
        trainer = compat.attached_trainer(self)
        self.seen.append((self.current_epoch, batch_idx, compat.will_accumulate(trainer), trainer))
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train_metric", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_metric", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(batches: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(batches * 2, 2)), batch_size=2)


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    settings = dict(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, max_epochs=1,
    )  # fmt: skip
    return L.Trainer(**{**settings, **kwargs})


def test_attached_trainer_is_none_outside_a_fit_and_the_trainer_in_it(tmp_path):
    module = Tiny()
    assert compat.attached_trainer(module) is None
    fit = trainer(tmp_path, enable_checkpointing=False, limit_val_batches=0)
    fit.fit(module, loader(2))
    assert [seen[3] for seen in module.seen] == [fit, fit]


def test_will_accumulate_is_false_at_each_windows_last_batch_and_at_each_epochs_last(tmp_path):
    module = Tiny()
    fit = trainer(tmp_path, enable_checkpointing=False, limit_val_batches=0, accumulate_grad_batches=3, max_epochs=2)
    fit.fit(module, loader(7))
    # windows of 3: steps after batches 2 and 5, and after batch 6, the epoch's last; the window restarts each epoch
    expected = [True, True, False, True, True, False, False]
    assert [(epoch, idx, flag) for epoch, idx, flag, _ in module.seen] == [
        (epoch, idx, flag) for epoch in (0, 1) for idx, flag in enumerate(expected)
    ]


class Probe(Callback):
    """After the checkpoint callback, records what the compat functions say about it, and saves last.ckpt once."""

    def __init__(self, checkpoint: ModelCheckpoint, save_at_step: int) -> None:
        self.checkpoint = checkpoint
        self.save_at_step = save_at_step
        self.records: list[tuple] = []
        self.candidates: dict = {}

    def on_validation_end(self, trainer, pl_module):
        self.records.append(
            ("validation", trainer.sanity_checking, compat.checkpoint_should_skip(self.checkpoint, trainer))
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step != self.save_at_step:
            return
        cb = self.checkpoint
        before = compat.checkpoint_last_saved_step(cb)
        skip_before = compat.checkpoint_should_skip(cb, trainer)
        self.candidates = compat.checkpoint_monitor_candidates(cb, trainer)
        compat.checkpoint_save_last(cb, trainer, self.candidates)
        saved = compat.checkpoint_last_saved_step(cb)
        skip_after = compat.checkpoint_should_skip(cb, trainer)
        compat.set_checkpoint_last_saved_step(cb, before)
        skip_reset = compat.checkpoint_should_skip(cb, trainer)
        self.records.append(("step", step, before, skip_before, saved, skip_after, skip_reset))


def test_model_checkpoint_internals_save_last_and_track_the_saved_step(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    probe = Probe(checkpoint, save_at_step=2)
    module = Tiny()
    fit = trainer(tmp_path, callbacks=[checkpoint, probe], num_sanity_val_steps=1, limit_val_batches=1)
    fit.fit(module, loader(4), loader(1))

    assert probe.records[0] == ("validation", True, True)  # nothing is saved during the sanity check
    # at step 2: not saved yet; saving writes last.ckpt and marks step 2 saved (so a second save is skipped);
    # setting the step back lets ModelCheckpoint save at step 2 again
    assert probe.records[1] == ("step", 2, 0, False, 2, True, False)
    assert probe.candidates["step"] == 2 and probe.candidates["epoch"] == 0 and "train_metric" in probe.candidates
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["global_step"] >= 2
    # not fitting: never save
    fit.validate(module, loader(1), verbose=False)
    assert compat.checkpoint_should_skip(checkpoint, fit)


@pytest.mark.parametrize(
    ("checkpoint_kwargs", "trainer_kwargs", "with_validation", "expected"),
    [
        ({}, {}, True, True),  # validation once at each epoch's end: save there
        ({}, {}, False, True),  # no validation: at the epoch's end
        ({}, {"val_check_interval": 2}, True, False),  # validation within the epoch: after validation
        ({}, {"check_val_every_n_epoch": 2}, True, False),  # not every epoch: after validation
        ({"save_on_train_epoch_end": False}, {}, True, False),  # as asked
        ({"save_on_train_epoch_end": True}, {"val_check_interval": 2}, True, True),
    ],
)
def test_model_checkpoint_saves_on_train_epoch_end_when_validation_runs_at_it(
    tmp_path, checkpoint_kwargs, trainer_kwargs, with_validation, expected
):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=0, **checkpoint_kwargs)
    answers = []

    class Ask(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            answers.append(compat.checkpoint_saves_on_train_epoch_end(checkpoint, trainer))

    fit = trainer(tmp_path, callbacks=[checkpoint, Ask()], **trainer_kwargs)
    fit.fit(Tiny(), loader(4), loader(1) if with_validation else None)
    assert answers == [expected]


def test_wandb_logger_passes_its_init_args_to_wandb_init_and_starts_again_when_forgotten(tmp_path, monkeypatch):
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "run", None)
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(dict(kwargs)) or object())
    logger = WandbLogger(project="p", save_dir=str(tmp_path), name="n")
    init = compat.wandb_init_args(logger)
    assert (init["project"], init["name"], init["dir"]) == ("p", "n", str(tmp_path))
    init["mode"] = "offline"  # a change before the run starts reaches wandb.init
    init.pop("anonymous", None)
    run = logger.experiment
    assert calls == [init] and calls[0]["mode"] == "offline"
    assert logger.experiment is run and len(calls) == 1  # the run is cached
    init["mode"] = "disabled"
    compat.wandb_forget_run(logger)
    assert logger.experiment is not run and len(calls) == 2 and calls[1]["mode"] == "disabled"


# --- sacreBLEU -----------------------------------------------------------------------------------------------------

HYPOTHESES = ["The cat sat on the mat.", "A dog runs", "", "Hello , world!", "Zwei Männer stehen am Herd."]
REFERENCES = ["The cat is on the mat.", "A dog is running.", "Nothing here.", "Hello, world!", "Zwei Männer kochen."]
SCORERS = {
    "bleu": lambda: BLEU(tokenize="13a"),
    "bleu_lc": lambda: BLEU(tokenize="13a", lowercase=True),
    "chrf": lambda: CHRF(char_order=6, word_order=0),
    "chrf++": lambda: CHRF(char_order=6, word_order=2),
}


@pytest.mark.parametrize("name", SCORERS)
def test_summed_segment_statistics_score_as_sacrebleus_corpus_score(name):
    scorer = SCORERS[name]()
    probe = compat.segment_statistics(scorer, ["x"], ["x"])
    assert "nrefs:1" in scorer.get_signature().format()  # the probe fixes the signature's number of references
    parts = [compat.segment_statistics(scorer, HYPOTHESES[:2], REFERENCES[:2])]
    parts.append(compat.segment_statistics(scorer, HYPOTHESES[2:], REFERENCES[2:]))
    segments = [stats for part in parts for stats in part]
    assert len(segments) == len(HYPOTHESES)
    # integer counts of one length: metrics.py sums them in a long tensor across batches and processes
    assert all(len(stats) == len(probe[0]) and all(isinstance(n, int) for n in stats) for stats in segments)
    summed = [sum(column) for column in zip(*segments)]
    expected = SCORERS[name]().corpus_score(HYPOTHESES, [REFERENCES])
    assert compat.score_from_statistics(scorer, summed).score == expected.score


# --- no private member of a dependency outside compat.py -----------------------------------------------------------

SCANNED = ("src", "benchmarks")  # every .py file under these, but src/seq2seq/compat.py
NAMED_TUPLE_API = {"_asdict", "_replace", "_fields", "_make", "_field_defaults"}  # public despite the underscore


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NAMED_TUPLE_API


def is_ours(cls: type, root: Path) -> bool:
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:  # builtins
        return False
    return path is not None and any(Path(path).resolve().is_relative_to(root / top) for top in SCANNED)


@functools.cache
def private_names_of(cls: type) -> frozenset[str]:
    """The private names a dependency's class defines or uses (instance attributes included): from its source."""
    try:
        return frozenset(re.findall(r"\b_[A-Za-z0-9]\w*", inspect.getsource(cls)))
    except (OSError, TypeError):  # compiled
        return frozenset(name for name in dir(cls) if is_private(name))


def class_private_names(path: Path, tree: ast.Module, root: Path) -> dict[str, frozenset[str]]:
    """Per class of the file: the private names of every dependency class it inherits from. A mixin counts the
    dependency bases of the file's classes built on it (its ``self`` is one of them)."""
    namespace: dict = {}
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(body=imports, type_ignores=[]), str(path), "exec"), namespace)  # the file's imports only
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def local_closure(name: str) -> set[str]:
        bases = {b.id for b in classes[name].bases if isinstance(b, ast.Name) and b.id in classes}
        return {name}.union(*(local_closure(b) for b in bases))

    def foreign(name: str) -> set[type]:
        found = set()
        for base in classes[name].bases:
            if not (isinstance(base, ast.Name) and base.id in classes):
                value = eval(compile(ast.Expression(base), str(path), "eval"), namespace)
                found |= {k for k in getattr(value, "__mro__", ()) if k is not object and not is_ours(k, root)}
        return found

    result = {}
    for name in classes:
        users = [other for other in classes if name in local_closure(other)]
        dependency_classes = set().union(*(foreign(c) for user in users for c in local_closure(user)))
        result[name] = frozenset().union(*map(private_names_of, dependency_classes))
    return result


def private_uses(root: Path) -> list[str]:
    """``file:line: code`` for every use of a dependency's private member in ``src/`` and ``benchmarks/`` of
    ``root``, but ``src/seq2seq/compat.py``. Our own private names (``self._x`` that no dependency base class
    defines, our ``_functions``) are fine, and so is importing our own private names."""
    sys.path[:0] = [str(root / "src"), str(root / "benchmarks")]
    try:
        files = sorted(p for top in SCANNED for p in (root / top).rglob("*.py") if p != root / "src/seq2seq/compat.py")
        parsed = {path: ast.parse(path.read_text(), str(path)) for path in files}
        words = {path: class_private_names(path, tree, root) for path, tree in parsed.items()}
    finally:
        del sys.path[:2]
    local_modules = {"seq2seq"} | {path.stem for path in files}

    def scopes(path: Path):  # (node, the private names of the dependency classes its class inherits from)
        for top in parsed[path].body:
            inherited = words[path].get(top.name, frozenset()) if isinstance(top, ast.ClassDef) else frozenset()
            for node in ast.walk(top):
                yield node, inherited

    own: set[str] = set()  # our own private names: defined or assigned in our code, not inherited
    for path in parsed:
        for node, inherited in scopes(path):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr not in inherited:
                own.update([node.attr] if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls") else [])
    own = {name for name in own if is_private(name)}

    found = []
    for path in parsed:
        for node, inherited in scopes(path):
            bad = False
            if isinstance(node, ast.Attribute) and is_private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    bad = node.attr in inherited
                else:
                    bad = node.attr not in own
            elif isinstance(node, ast.ImportFrom | ast.Import):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                names = [alias.name for alias in node.names]
                dotted = [module] if module else names
                if not getattr(node, "level", 0) and not any(d.split(".")[0] in local_modules for d in dotted):
                    parts = [part for d in dotted for part in d.split(".")] + (names if module else [])
                    bad = any(is_private(part) for part in parts)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) > 1:
                name = node.args[1]
                if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and isinstance(name, ast.Constant):
                    bad = isinstance(name.value, str) and is_private(name.value) and name.value not in own
            if bad:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return sorted(set(found))


def test_no_module_outside_compat_uses_a_private_member_of_a_dependency():
    assert private_uses(ROOT) == [], "use (or add) a function in src/seq2seq/compat.py instead"


def test_the_scan_finds_private_members_of_dependencies_and_not_our_own(tmp_path):
    (tmp_path / "src" / "seq2seq").mkdir(parents=True)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "src" / "seq2seq" / "compat.py").write_text("import torch\ntorch._foreach_mul_([], 1.0)\n")
    (tmp_path / "src" / "seq2seq" / "bad.py").write_text(
        "import torch\nfrom torch import nn\nfrom torch._dynamo import config\n"
        "from lightning.pytorch import LightningModule\n\n\n"
        "class Mixin:\n    def forward(self, x):\n        return self._flat_weights\n\n\n"
        "class GRU(Mixin, nn.GRU):\n    pass\n\n\n"
        "class Module(LightningModule):\n    def step(self):\n        self._our_count = 1\n        t = self._trainer\n"
        "        t.fit_loop._should_accumulate()\n        getattr(t, '_experiment')\n"
        "        torch._foreach_mul_([], self._our_count)\n        return self._our_helper()\n\n"
        "    def _our_helper(self):\n        return 1\n"
    )
    (tmp_path / "benchmarks" / "ok.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n    def f(self, other):\n"
        "        self._our_cache = 1\n"
        "        return other._our_cache, self._our_helper_b(), nn.Linear(1, 1)._version\n\n"
        "    def _our_helper_b(self):\n        return 1\n"
    )
    found = private_uses(tmp_path)
    expected = {
        "src/seq2seq/bad.py:3": "_dynamo",  # a private module
        "src/seq2seq/bad.py:9": "self._flat_weights",  # in a mixin of nn.GRU
        "src/seq2seq/bad.py:19": "self._trainer",  # inherited from LightningModule
        "src/seq2seq/bad.py:20": "t.fit_loop._should_accumulate",
        "src/seq2seq/bad.py:21": "'_experiment'",
        "src/seq2seq/bad.py:22": "torch._foreach_mul_",
        "benchmarks/ok.py:7": "._version",  # another object's: not one of our own names
    }
    assert len(found) == len(expected), found
    assert all(
        any(line.startswith(f"{where}:") and what in line for line in found) for where, what in expected.items()
    ), found


# --- the module's promises -----------------------------------------------------------------------------------------

CAPPED = {"torch", "lightning", "sacrebleu"}  # the libraries whose private APIs compat.py uses


def test_each_compat_function_names_its_private_api_tested_versions_and_fix():
    functions = [f for name, f in vars(compat).items() if inspect.isfunction(f) and f.__module__ == compat.__name__]
    assert len(functions) >= 17
    for function in functions:
        doc = inspect.getdoc(function) or ""
        assert all(key in doc for key in ("Private API:", "Tested on:", "Breaks if:", "Fix:")), function.__name__


def test_the_libraries_whose_private_apis_we_use_are_capped_and_installed_within_the_caps():
    from importlib.metadata import version

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = {r.name: r for r in map(Requirement, pyproject["project"]["dependencies"]) if r.name in CAPPED}
    assert set(requirements) == CAPPED
    for name, requirement in requirements.items():
        assert any(spec.operator == "<" for spec in requirement.specifier), f"{name} has no cap"
        installed = version(name)
        assert requirement.specifier.contains(installed, prereleases=True), f"{name} {installed}: not {requirement}"
