"""YAML experiment file -> typed, validated `Experiment`; CLI overrides; grid expansion into cells.

This package knows nothing of models or torch: it only checks that a configuration is well formed,
so that every mistake is reported in one line (naming the field and what is allowed) before anything
expensive happens. One module per concern: `names` (allowed values, precisions, the error type,
path resolution), `validation` (shared checks), `spec` (the schema, each section validating itself),
`loading` (typed building, YAML, `load_experiment`), `overrides` (CLI flags), `cells` (grid
expansion, cell identity and labels, shards). What the rest of the project uses is imported
here by name, so a reader sees where each name lives.
"""

from .cells import (MeasurementSettings, LATER_FIELDS, DiffusionDecoding, ARDecoding, Cell, GRID_COLUMNS,
                    IDENTITY_COLUMNS, ar_decoding, expand_cells, engine_cells, parse_shard, select_shard)
from .loading import (build_validated, read_yaml, load_experiment, project_root)
from .names import (FAMILIES, MODEL_TYPES, ATTENTION_BACKENDS, DEVICES, PROMPT_SOURCES, DIFFUSION_SAMPLERS,
                    THRESHOLD_SAMPLERS, AUTO, family_default, DEFAULT_THRESHOLD, DEFAULT_LEAP_RELAXED,
                    DEFAULT_LEAP_WINDOW, DIFFUSION_CACHES, DIFFUSION_SCHEDULES, FAMILY_SCHEDULES,
                    THRESHOLD_STEPS, NOISE_LAYOUTS, AR_DECODE_MODES, DIFFUSION_FORWARDS, ENGINES,
                    WEIGHT_FORMATS, LLAMACPP_SAMPLERS, LOCAL_SERVER, Precision, PRECISIONS, ConfigError,
                    resolve_path, PACKAGE_PREFIX, HUB_ID, resolve_asset)
from .overrides import (Override, OVERRIDES, apply_overrides)
from .spec import (ModelSpec, GridSpec, DiffusionSpec, ARSamplingSpec, AutoregressiveSpec, LlamaCppSpec,
                   OpenAISpec, EnginesSpec, TimingSpec, PAIR_KINDS, PairsSpec, PromptSpec, TaskSpec,
                   QualitySpec, LoadGuardSpec, Experiment, DEFAULT_MAX_OTHER_CORES, RESULTS_ROOT, FIGURES_ROOT)
from .validation import (encoder_depth, positive, distinct, finite, one_of, exists, EMBEDDINGS,
                         safetensors_shapes, check_embedding, writable_folder, diffusion_shape_error)

__all__ = ["MeasurementSettings", "LATER_FIELDS", "DiffusionDecoding", "ARDecoding", "Cell", "GRID_COLUMNS",
           "IDENTITY_COLUMNS", "ar_decoding", "expand_cells", "engine_cells", "parse_shard", "select_shard",
           "build_validated", "read_yaml", "load_experiment", "project_root", "FAMILIES", "MODEL_TYPES",
           "ATTENTION_BACKENDS", "DEVICES", "PROMPT_SOURCES", "DIFFUSION_SAMPLERS", "THRESHOLD_SAMPLERS", "AUTO",
           "family_default", "DEFAULT_THRESHOLD", "DEFAULT_LEAP_RELAXED", "DEFAULT_LEAP_WINDOW", "DIFFUSION_CACHES",
           "DIFFUSION_SCHEDULES", "FAMILY_SCHEDULES", "THRESHOLD_STEPS", "NOISE_LAYOUTS", "AR_DECODE_MODES",
           "DIFFUSION_FORWARDS", "ENGINES", "WEIGHT_FORMATS", "LLAMACPP_SAMPLERS", "LOCAL_SERVER", "Precision",
           "PRECISIONS", "ConfigError", "resolve_path", "PACKAGE_PREFIX", "HUB_ID", "resolve_asset", "Override",
           "OVERRIDES", "apply_overrides", "ModelSpec", "GridSpec", "DiffusionSpec", "ARSamplingSpec",
           "AutoregressiveSpec", "LlamaCppSpec", "OpenAISpec", "EnginesSpec", "TimingSpec", "PAIR_KINDS", "PairsSpec",
           "PromptSpec", "TaskSpec", "QualitySpec", "LoadGuardSpec", "Experiment", "DEFAULT_MAX_OTHER_CORES",
           "RESULTS_ROOT", "FIGURES_ROOT", "encoder_depth", "positive", "distinct", "finite", "one_of", "exists",
           "EMBEDDINGS", "safetensors_shapes", "check_embedding", "writable_folder", "diffusion_shape_error"]
