"""A new engine or model family enters through the registry alone: registered in a test (never edited into the
code), it yields cells, an engine or a loaded model with its generator, and a dry-run line."""

from __future__ import annotations

import torch

from conftest import mini_config_dict, write_config

from dlm_bench import registry
from dlm_bench.cli import dry_run
from dlm_bench.config import ARDecoding, Cell, ModelSpec, expand_cells, load_experiment
from dlm_bench.engines import EngineAnswer, EngineBatch
from dlm_bench.engines.generator import EngineGenerator
from dlm_bench.engines.pool import EnginePool
from dlm_bench.generation.cell_generator import make_generator
from dlm_bench.generation.work import diffusion_work
from dlm_bench.models.loader import LoadSettings, load_model


class EchoEngine:
    """Answers every prompt with its own first tokens repeated: a stand-in engine with a known output."""

    name = "echo"
    version, build, threads = "echo 1", "", None

    def __init__(self, cell: Cell):
        self.cell = cell

    def run(self, prompt_ids):
        n = self.cell.n_out
        answers = [EngineAnswer(text="", token_ids=(list(p) * n)[:n], tokens_returned=n, latency_ms=1.0)
                   for p in prompt_ids]
        return EngineBatch(1.0, answers)

    def pids(self):
        return ()


def echo_cells(exp, model, common) -> list[Cell]:
    """The echo engine's rule: one cell per AR model at B = 1."""
    if model.kind != registry.AR or common["batch_size"] != 1:
        return []
    return [Cell(**common, decoding=ARDecoding(None), engine="echo")]


def echo_engine(pool, cell, tokenizer) -> EchoEngine:
    return EchoEngine(cell)


def test_an_engine_registered_alone_yields_cells_an_engine_a_generator_and_a_dry_run_line(
        tiny_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry.ENGINES, "echo", registry.Engine(
        "echo", (registry.AR,), cells="test_registry_extension:echo_cells",
        factory="test_registry_extension:echo_engine"))
    data = mini_config_dict(tiny_models, tmp_path)
    data["engines"] = {"engine": ["torch", "echo"]}
    exp = load_experiment(write_config(tmp_path, data))
    echo = [c for c in expand_cells(exp) if c.engine == "echo"]
    assert [(c.model.name, c.batch_size, c.seq_len) for c in echo] == [("tiny-llama", 1, 32)]
    with EnginePool(exp, torch.device("cpu"), tmp_path / "logs", progress=False) as pool:
        engine = pool.engine_for(echo[0], tokenizer=object())
    assert isinstance(engine, EchoEngine)
    trace = EngineGenerator(engine).generate(torch.tensor([[3, 4, 5] * 6]), echo[0].n_out)
    assert trace.output_ids.tolist() == [([3, 4, 5] * 6 * 2)[:16]]
    assert dry_run(exp, (0, 1)) == 0
    assert "tiny-llama B=1 N=32 echo" in capsys.readouterr().out


def test_a_family_registered_alone_is_loaded_by_its_native_module_and_generates(tiny_models, tmp_path, monkeypatch,
                                                                                capsys):
    llada = registry.FAMILIES["llada"]
    monkeypatch.setitem(registry.FAMILIES, "llada_like", registry.Family(
        "llada_like", registry.DIFFUSION, "llada", schedule="llada", threshold_steps="unbounded",
        noise_layout="canvas", native=llada.native))
    data = mini_config_dict(tiny_models, tmp_path)
    data["models"] = [{"name": "like", "family": "llada_like", "path": str(tiny_models["llada"])}]
    exp = load_experiment(write_config(tmp_path, data))
    cells = expand_cells(exp)
    assert {(c.steps, c.decoding.schedule) for c in cells} == {(4, "llada"), (8, "llada")}
    loaded = load_model(exp.models[0], torch.device("cpu"), LoadSettings("fp32", "sdpa", 0, exp.base_dir))
    reference = load_model(ModelSpec(name="ref", family="llada", path=str(tiny_models["llada"])),
                           torch.device("cpu"), LoadSettings("fp32", "sdpa", 0, exp.base_dir))
    ids = torch.tensor([[5, 6, 7, 8] * 4])
    torch.manual_seed(0)
    mine = make_generator(cells[0], loaded).generate(ids, cells[0].n_out, steps=cells[0].steps)
    torch.manual_seed(0)
    theirs = make_generator(cells[0], reference).generate(ids, cells[0].n_out, steps=cells[0].steps)
    assert mine.output_ids.tolist() == theirs.output_ids.tolist()  # the same weights, loaded the same way
    assert dry_run(exp, (0, 1)) == 0
    assert "like B=1 N=32 K=4 low_confidence/none" in capsys.readouterr().out


def test_a_sampler_and_a_cache_registered_alone_yield_cells_a_generator_and_a_dry_run_line(
        tiny_models, tmp_path, monkeypatch, capsys):
    """A confidence sampler and a cache whose later steps run the block to the canvas end, registered under new
    names, decode exactly as low_confidence/prefix does: the generator and its work count read the entries' rules,
    never their names (a name it did not know would run as another cache and do other work)."""
    monkeypatch.setitem(registry.SAMPLERS, "sure", registry.Sampler("sure", "confidence", "#000000"))
    monkeypatch.setitem(registry.CACHES, "to_the_end", registry.Cache("to_the_end", "block_to_end"))
    data = mini_config_dict(tiny_models, tmp_path)
    data["models"] = data["models"][1:]  # the diffusion model
    data["diffusion"].update(sampler=["sure", "low_confidence"], cache=["to_the_end", "prefix"])
    exp = load_experiment(write_config(tmp_path, data))
    cells = {(c.decoding.sampler, c.decoding.cache, c.batch_size, c.steps): c for c in expand_cells(exp)}
    assert {key[:2] for key in cells} == {("sure", "to_the_end"), ("sure", "prefix"), ("low_confidence", "to_the_end"),
                                          ("low_confidence", "prefix")}
    loaded = load_model(exp.models[0], torch.device("cpu"), LoadSettings("fp32", "sdpa", 0, exp.base_dir))
    ids = torch.tensor([[5, 6, 7, 8] * 4])
    mine = make_generator(cells["sure", "to_the_end", 1, 8], loaded).generate(ids, 16, steps=8)
    theirs = make_generator(cells["low_confidence", "prefix", 1, 8], loaded).generate(ids, 16, steps=8)
    assert mine.output_ids.tolist() == theirs.output_ids.tolist() and mine.work == theirs.work
    assert mine.work == diffusion_work(1, 16, 16, 8, 8, "to_the_end") != diffusion_work(1, 16, 16, 8, 8, "dual")
    assert dry_run(exp, (0, 1)) == 0
    assert "tiny-llada B=1 N=32 K=8 sure/to_the_end" in capsys.readouterr().out
