"""Run llama.cpp's own `convert_hf_to_gguf.py` with facts about a tokenizer supplied from outside its source.

Usage (a subprocess of `engines.llamacpp.gguf_export`; it imports nothing from the project):
    python convert_checkpoint.py --tree TREE [--pre NAME] [--add-bos true|false] [--verbatim-template]
        -- <convert_hf_to_gguf.py arguments>

--pre: the `tokenizer.ggml.pre` name to write when the converter does not recognise the tokenizer's
    pre-tokenizer hash (it knows only published tokenizers).
--add-bos: whether llama.cpp prepends BOS when it tokenizes a prompt, written as the tokenizer behaves.
--verbatim-template: a model without a chat template gets one that passes the prompt through as is
    (llama-diffusion-cli always formats its prompt with the model's template, or ChatML without one).
The vendored tree is not edited: the converter's classes are wrapped in this process only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

VERBATIM_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def main() -> None:
    if "--" not in sys.argv:
        raise SystemExit("usage: convert_checkpoint.py --tree TREE [options] -- <converter arguments>")
    split = sys.argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("--tree", required=True)
    p.add_argument("--pre")
    p.add_argument("--add-bos", choices=["true", "false"])
    p.add_argument("--verbatim-template", action="store_true")
    args = p.parse_args(sys.argv[1:split])
    sys.path[:0] = [args.tree, str(Path(args.tree) / "gguf-py")]
    import gguf
    from conversion.base import TextModel

    if args.pre:
        recognised = TextModel.get_vocab_base_pre

        def vocab_base_pre(self, tokenizer) -> str:
            try:
                return recognised(self, tokenizer)
            except NotImplementedError:  # an unpublished tokenizer: the name given by the caller
                return args.pre

        TextModel.get_vocab_base_pre = vocab_base_pre
    if args.add_bos:
        write_add_bos = gguf.GGUFWriter.add_add_bos_token
        gguf.GGUFWriter.add_add_bos_token = lambda self, value: write_add_bos(self, args.add_bos == "true")
    if args.verbatim_template:
        add_special = gguf.SpecialVocab.add_to_gguf

        def add_to_gguf(self, gw, quiet: bool = False) -> None:
            add_special(self, gw, quiet=quiet)
            if self.chat_template is None:
                gw.add_chat_template(VERBATIM_TEMPLATE)

        gguf.SpecialVocab.add_to_gguf = add_to_gguf

    sys.argv = [str(Path(args.tree) / "convert_hf_to_gguf.py"), *sys.argv[split + 1:]]
    import convert_hf_to_gguf

    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
