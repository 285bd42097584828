"""The one measurement loop: the timed region with marks, engines as generators inside it, and pairs of a
torch arm and an engine arm with known times."""

import random
import re

import pytest
import torch

from dlm_bench.engines import EngineAnswer, EngineBatch, EngineError
from dlm_bench.engines.generator import EngineGenerator, contract_error
from dlm_bench.generation import GenerationTrace
from dlm_bench.measure.loop import Arm, CallGenerator, time_pair, timed_run
from dlm_bench.sweep.runner import FALLBACK_LABEL
from dlm_bench.selection.pairs import paired_ratio


class ScriptedClock:
    """A clock whose marks are a running time in ms that the fake generators advance."""

    name = "scripted"

    def __init__(self):
        self.now = 0.0

    def mark(self):
        return self.now

    def synchronize(self):
        pass

    def elapsed_ms(self, start, end):
        return end - start


class SteppingGenerator:
    """Each generation takes `step_ms` per step on the scripted clock and marks every step."""

    def __init__(self, clock, steps, step_ms):
        self.clock, self.steps, self.step_ms = clock, steps, step_ms

    def generate(self, ids, n_out, *, steps=None, marker=None):
        marks = []
        for _ in range(self.steps):
            self.clock.now += self.step_ms
            if marker:
                marks.append(marker())
        return GenerationTrace(output_ids=torch.zeros(ids.shape[0], n_out, dtype=torch.long), marks=marks,
                               forward_passes=self.steps, steps_executed=self.steps)


class FakeEngine:
    """An engine that reports `ms` per batch and returns ids 7, 8, ... (or fails when told to)."""

    name, version, build, threads = "fake", "0", "", 1

    def __init__(self, ms, returned=None, fail=False):
        self.ms, self.returned, self.fail, self.calls = ms, returned, fail, 0

    def run(self, prompt_ids):
        self.calls += 1
        if self.fail:
            raise EngineError("the fake server died")
        answers = [EngineAnswer(text="", token_ids=self.returned, tokens_returned=len(self.returned or []),
                                latency_ms=self.ms, steps=4) for _ in prompt_ids]
        return EngineBatch(self.ms, answers, step_ms=[self.ms / 4] * 4)


def test_the_timed_region_reads_every_mark_from_the_start():
    clock = ScriptedClock()
    run = timed_run(SteppingGenerator(clock, 4, 2.5), torch.zeros(1, 3, dtype=torch.long), 6, 4, clock)
    assert run.latency_ms == 10.0 and run.mark_offsets_ms == [2.5, 5.0, 7.5, 10.0]


def test_an_engine_is_a_generator_whose_own_timing_is_the_runs_latency():
    clock = ScriptedClock()
    clock.now = 500.0  # a CLI that loads its model before it generates: its own time excludes the load
    run = timed_run(EngineGenerator(FakeEngine(40.0, returned=[7, 8, 9, 10])), torch.zeros(2, 3, dtype=torch.long),
                    4, None, clock)
    assert run.latency_ms == 40.0 and run.mark_offsets_ms == []
    assert run.trace.output_ids.tolist() == [[7, 8, 9, 10]] * 2
    assert run.trace.steps_executed == 4 and run.trace.report.step_ms == [10.0] * 4


@pytest.mark.parametrize("returned, reason", [
    ([7, 8], "answer 1 of 2 has 2 tokens (counted by the engine), not N_out = 4"),
    ([7, 8, 9, 10, 11], "answer 1 of 2 has 5 tokens (counted by the engine), not N_out = 4"),
    ([], "answer 1 of 2 is empty"),
])
def test_an_engine_answer_of_other_than_n_out_tokens_is_an_error_not_a_time(returned, reason):
    clock = ScriptedClock()
    with pytest.raises(EngineError, match=re.escape(f"fake: {reason}")):
        timed_run(EngineGenerator(FakeEngine(40.0, returned=returned)), torch.zeros(2, 3, dtype=torch.long), 4,
                  None, clock)


def test_an_engine_whose_count_disagrees_with_its_ids_or_that_drops_a_prompt_is_an_error():
    batch = EngineBatch(1.0, [EngineAnswer(text="x", token_ids=[1, 2, 3], tokens_returned=4, latency_ms=1.0)])
    assert contract_error(batch, 1, 4) == ("answer 1 of 1 has 3 tokens (returned), not N_out = 4: the engine "
                                           "stopped early or ran on")
    assert contract_error(batch, 2, 3) == "1 answers came back for 2 prompts"
    text_only = EngineBatch(1.0, [EngineAnswer(text="", token_ids=None, tokens_returned=4, latency_ms=1.0)])
    assert contract_error(text_only, 1, 4) is None  # a CLI's all-EOS answer prints no text and is whole


def test_a_torch_arm_against_a_fake_engine_arm_gives_the_known_ratio_and_ci():
    clock = ScriptedClock()
    ids = torch.zeros(1, 3, dtype=torch.long)
    torch_arm = Arm(SteppingGenerator(clock, 6, 5.0), ids, 8, 6)  # 30 ms per run on the clock
    engine = FakeEngine(12.0, returned=list(range(8)))
    engine_arm = Arm(EngineGenerator(engine), ids, 8, 6)  # reports 12 ms per run
    timing = time_pair(torch_arm, engine_arm, 10, 2, clock, random.Random(1))
    order, torch_ms, engine_ms = timing.order, timing.reference_ms, timing.contender_ms
    assert engine.calls == 12 and len(torch_arm.runs) == len(engine_arm.runs) == 10  # warm-ups kept out
    assert torch_ms == [30.0] * 10 and engine_ms == [12.0] * 10 and set(order) == {"R", "C"}
    est = paired_ratio(torch_ms, engine_ms)
    assert (est.value, est.ci_low, est.ci_high) == (2.5, 2.5, 2.5)


class ThrashedArm:
    """A scripted arm: `ms` per run, `penalty_ms` more when the other arm ran last (as if it evicted this arm's
    caches); `last` is shared by both arms."""

    pids = ()

    def __init__(self, name, ms, penalty_ms, last):
        self.name, self.ms, self.penalty_ms, self.last = name, ms, penalty_ms, last

    def warm_up(self, count):
        pass

    def generate_ms(self, clock):
        ms = self.ms + (self.penalty_ms if self.last[0] not in (None, self.name) else 0.0)
        self.last[0] = self.name
        return ms


def test_each_arm_is_timed_alone_before_the_pairs_and_the_check_shows_what_the_pairing_cost_it():
    import statistics

    import pandas as pd

    from dlm_bench.results import PairRecord
    from dlm_bench.selection.pairs import alone_check

    last = [None]
    timing = time_pair(ThrashedArm("R", 10.0, 5.0, last), ThrashedArm("C", 20.0, 0.0, last), 8, 0, None,
                       random.Random(3), solo=4)
    # the blocks alone: four runs of each, the arm of the second block starts after the other arm's last run
    assert timing.solo_order in ("RC", "CR")
    assert timing.reference_solo_ms == ([10.0] * 4 if timing.solo_order == "RC" else [15.0, 10.0, 10.0, 10.0])
    assert timing.contender_solo_ms == [20.0] * 4
    # inside the pairs, R pays 5 ms each time C ran just before it (the sequence continues from the blocks)
    runs = timing.solo_order[-1] + timing.order
    expected = [10.0 + 5.0 * (before == "C") for before, side in zip(runs, runs[1:]) if side == "R"]
    assert timing.reference_ms == expected and len(expected) == 8 and timing.contender_ms == [20.0] * 8
    record = PairRecord("p", "speedup", "ok", "t", "cpu", "r", "c", "R", "C", 64, 1, 0, timing.order,
                        timing.reference_ms, timing.contender_ms, solo_order=timing.solo_order,
                        reference_solo_ms=timing.reference_solo_ms, contender_solo_ms=timing.contender_solo_ms)
    check = alone_check(pd.Series(record.to_row()))
    assert check.reference_in_pair == statistics.median(expected) / 10.0 and check.contender_in_pair == 1.0
    assert (check.alone.value, check.alone.high) == (0.5, max(timing.reference_solo_ms) / 20.0)
    # without runs alone nothing is drawn for them: the pairs' orders are the generator's first draws
    rng = random.Random(3)
    assert time_pair(ThrashedArm("R", 1.0, 0.0, [None]), ThrashedArm("C", 1.0, 0.0, [None]), 8, 0, None,
                     random.Random(3)).order == "".join(rng.choice(("RC", "CR")) for _ in range(8))


def test_an_engine_that_fails_inside_a_pair_raises_its_one_line_error():
    clock = ScriptedClock()
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(EngineError, match="the fake server died"):
        time_pair(Arm(SteppingGenerator(clock, 2, 1.0), ids, 4, 2), Arm(EngineGenerator(FakeEngine(1.0, fail=True)),
                                                                         ids, 4, 2), 3, 0, clock, random.Random(0))


def test_a_bare_call_is_timed_without_marks_and_an_arm_keeps_its_last_output():
    clock = ScriptedClock()

    def run(ids):
        clock.now += 4.0
        return ids + 1

    arm = Arm(CallGenerator(run), torch.zeros(1, 2, dtype=torch.long), 2)
    assert arm.generate_ms(clock) == 4.0 and arm.runs[0].mark_offsets_ms == [] and arm.last.tolist() == [[1, 1]]


def test_an_arm_sets_its_seed_before_every_generation():
    seen = []

    class Drawing:
        def generate(self, ids, n_out, *, steps=None, marker=None):
            seen.append(float(torch.rand(1)))
            return GenerationTrace(output_ids=ids, marks=[], forward_passes=1, steps_executed=1)

    arm = Arm(Drawing(), torch.zeros(1, 1, dtype=torch.long), 1, seed=3)
    arm.warm_up(1)
    arm.generate_ms(ScriptedClock())
    assert seen[0] == seen[1]


def test_the_kernel_a_cell_ran_on_is_a_record_field_and_older_records_take_it_from_their_label():
    from dlm_bench.results import CellRecord

    base = {"cell_id": "c", "identity": {}, "status": "ok", "experiment": "e", "weights": "synthetic",
            "hardware": "cpu", "settings": {}}
    assert CellRecord.from_json({**base, "attention_kernel": FALLBACK_LABEL, "kernel": "sdpa"}).kernel == "sdpa"
    assert CellRecord.from_json({**base, "attention_kernel": "n/a (engine)", "kernel": None}).kernel is None
    # a record written before the field: its label was the kernel, or after a fallback the kernel that ran first
    for label, kernel in (("sdpa_flash", "sdpa_flash"), (FALLBACK_LABEL, "sdpa"), ("n/a (engine)", None), (None, None)):
        assert CellRecord.from_json({**base, "attention_kernel": label}).kernel == kernel, label


class BusyArm:
    """An arm that computes for `ms` (one core) per run and says it runs in this process."""

    pids = ()

    def __init__(self, ms):
        self.ms = ms

    def warm_up(self, count):
        pass

    def generate_ms(self, clock):
        import time

        start = time.perf_counter()
        while time.perf_counter() - start < self.ms / 1000:
            pass
        return 1000 * (time.perf_counter() - start)


class BurningEngineArm(BusyArm):
    """An engine arm whose server process keeps burning a core after (and between) its requests."""

    def __init__(self, ms, pid):
        super().__init__(ms)
        self.pids = (pid,)


@pytest.mark.integration
def test_an_engine_that_burns_cpu_beside_the_other_arm_is_stopped_while_it_runs_and_seen_when_watched():
    import subprocess
    import sys
    import time

    import pandas as pd

    from dlm_bench.results import PairRecord
    from dlm_bench.selection.pairs import measured_self_pairs

    burner = subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])
    try:
        time.sleep(0.3)
        torch_arm, engine_arm = BusyArm(80.0), BurningEngineArm(20.0, burner.pid)
        timing = time_pair(torch_arm, engine_arm, 6, 0, None, random.Random(0))
        # stopped while the torch arm ran: it took (almost) no CPU then; the torch arm's process during the engine's
        assert max(timing.reference_other_cpu_ms) <= 10.0 and len(timing.reference_other_cpu_ms) == 6
        assert all(x >= 0 for x in timing.contender_other_cpu_ms)
        # a self-pair of the torch arm with the burning engine left running beside it: its CPU is recorded, and the
        # calibration fails although both arms slow alike
        beside = time_pair(torch_arm, BusyArm(80.0), 6, 0, None, random.Random(1), beside_pids=(burner.pid,))
        assert min(beside.reference_other_cpu_ms) >= 40.0  # about one core for each 80 ms run (10 ms ticks)
        record = PairRecord("s", "self", "ok", "t", "cpu", "x", "x", "torch arm", "torch arm", 64, 1, 0, beside.order,
                            beside.reference_ms, beside.contender_ms, reference_other_cpu_ms=beside.reference_other_cpu_ms,
                            contender_other_cpu_ms=beside.contender_other_cpu_ms, beside="a burning engine")
        (found,) = measured_self_pairs(pd.DataFrame([record.to_row()]), resamples=100)
        assert found.other_cores > 0.5 and found.interfered and not found.passes
    finally:
        burner.kill()
        burner.wait()
    # a burner that is gone is skipped, not an error
    assert time_pair(BusyArm(5.0), BurningEngineArm(5.0, burner.pid), 6, 0, None, random.Random(2)).order
