"""Generation paths as values: each label parses back to its path, a row and a cell name the same path, and a
label that names no path is refused with what is allowed."""

import math
import re

import pytest

from dlm_bench.paths import ARPath, DiffusionPath, EnginePath, PathError

pytestmark = pytest.mark.unit


def test_each_path_label_parses_back_to_its_path():
    for path, label in ((DiffusionPath("random", "dual"), "random/dual"),
                        (DiffusionPath("low_confidence", "none", "compiled"), "low_confidence/none/compiled"),
                        (ARPath("static_compiled"), "static_compiled"),
                        (ARPath("eager", 0.7, 0.9, 1.1), "eager [t0.7 p0.9 rp1.1]"),
                        (ARPath("static", 0.7), "static [t0.7]"),
                        (EnginePath(), "torch"), (EnginePath("llamacpp", "q8_0"), "llamacpp:q8_0"),
                        (EnginePath("openai"), "openai")):
        assert path.label == label and type(path).parse(label) == path, label
    assert DiffusionPath.parse("random/dual/eager") == DiffusionPath("random", "dual")  # the eager forward is implied


def test_a_row_names_its_path_with_missing_values_as_unset():
    row = {"kind": "autoregressive", "decode": "eager", "temperature": 0.0, "top_p": math.nan,
           "repetition_penalty": 1.0, "engine": "torch", "weights_format": math.nan}
    assert ARPath.of(row) == ARPath("eager", 0.0, None, 1.0) and ARPath.of(row).decoding == "greedy"
    assert EnginePath.of(row) == EnginePath() and EnginePath.of({**row, "engine": math.nan}) == EnginePath()
    assert DiffusionPath.of({"sampler": "margin", "cache": "prefix", "forward": math.nan}) == \
        DiffusionPath("margin", "prefix", "eager")  # a row from before the forward axis


def test_the_as_published_paths_are_the_registrys_baselines():
    assert DiffusionPath.as_published() == DiffusionPath("low_confidence", "none", "eager")
    assert ARPath.as_published() == ARPath("eager")


@pytest.mark.parametrize("parse, text, says", [
    (DiffusionPath.parse, "fastest/dual", "diffusion path 'fastest/dual' is not allowed (sampler: 'fastest' is not "
                                          "allowed; allowed: low_confidence, "),
    (DiffusionPath.parse, "random", "diffusion path 'random' is not allowed (it needs 2 or 3 parts)"),
    (DiffusionPath.parse, "random/dual/jit", "(forward: 'jit' is not allowed; allowed: eager, compiled); allowed: "
                                             "sampler/cache[/forward]"),
    (DiffusionPath.parse, "random/disk", "(cache: 'disk' is not allowed; allowed: none, prefix, dual)"),
    (ARPath.parse, "turbo", "allowed decode modes: eager, static, static_compiled"),
    (ARPath.parse, "eager t0.7", "then its sampling in brackets"),
    (ARPath.parse, "eager [k40]", "'k40' is not allowed; allowed: t<temperature>"),
    (EnginePath.parse, "vllm", "engine 'vllm' is not allowed; allowed: torch, llamacpp, openai"),
    (EnginePath.parse, "torch:f32", "engine 'torch:f32' is not allowed"),
])
def test_a_label_that_names_no_path_is_refused_with_what_is_allowed(parse, text, says):
    with pytest.raises(PathError, match=re.escape(says)):
        parse(text)
