"""Character-level text (GPT2_TOKENIZER_CHAR, nanoGPT's shakespeare_char): the vocabulary
is the source's characters, prepared offline, and the model takes its size from it."""

import json

from gpt2 import data, runner, sources
from gpt2.tokenizer import CharEncoding
from kmatrix import kconfig
from kmatrix.cell import Cell, RunContext
from kmatrix.config import Config
from kmatrix.plan import plan

TEXTS = ["To be, or not to be: that is the question.\n" * 40, "Ay, there's the rub!\n" * 40]


def _source(tmp_path, **kw):
    for i, text in enumerate(TEXTS):
        (tmp_path / f"doc{i}.txt").write_text(text)
    return {"kind": "files", "files": str(tmp_path / "doc*.txt"), "tokenizer": "char", **kw}


def test_char_encoding_round_trips():
    enc = CharEncoding.of(TEXTS)
    assert enc.chars == "".join(sorted(set("".join(TEXTS))))
    assert enc.n_vocab == len(enc.chars) + 1 and enc.eot_token == len(enc.chars)
    ids = enc.encode_ordinary(TEXTS[1])
    assert enc.decode(ids) == TEXTS[1] and max(ids) < enc.eot_token


def test_prepare_char_data(tmp_path):
    src = _source(tmp_path)
    folder = data.prepare(src, tmp_path / "data")
    meta = json.loads((folder / "meta.json").read_text())
    enc = CharEncoding.of(TEXTS)
    assert meta["tokenizer"] == "char" and meta["chars"] == enc.chars
    assert meta["vocab_size"] == enc.n_vocab == data.TokenData(folder).vocab_size
    train = data.TokenData(folder).data["train"]
    assert "".join(enc.chars[i] for i in train[:20]) == TEXTS[0][:20]
    assert folder.name.endswith(sources.dataset_key(src).split("-")[-1])
    assert "-char-" in folder.name
    # one vocabulary for every part: the odd half numbers its characters as the whole
    odd = json.loads(
        (data.prepare({**src, "part": "odd"}, tmp_path / "data") / "meta.json").read_text()
    )
    assert odd["chars"] == meta["chars"]


def test_dataset_keys_of_bpe_sources_are_unchanged():
    """Data prepared before tokenizers became a choice keeps its folder."""
    assert sources.dataset_key({}) == "shakespeare-3b3e8cc71aa7"
    assert sources.dataset_key({"tokenizer": "char"}) != sources.dataset_key({})


def test_char_map_plans_and_trains_with_the_data_vocabulary(tmp_path):
    values = kconfig.apply_defconfig("fractal-char-16x16", dotconfig=tmp_path / ".config")
    src = _source(tmp_path)
    cfg = Config(values).replace(
        sweep_x_points=2,
        sweep_y_points=2,
        gpt2_max_steps=3,
        gpt2_data="files",
        gpt2_data_paths=[src["files"]],
        gpt2_data_dir=str(tmp_path / "data"),
    )
    cells = plan(cfg)
    assert {c.params["vocab_size"] for c in cells} == {0}
    assert {c.params["data"]["tokenizer"] for c in cells} == {"char"}
    ctxs = [RunContext(device="cpu", out_dir=tmp_path) for _ in cells]
    for ctx in ctxs[1:]:
        ctx.cache = ctxs[0].cache
    outs = runner.run_batch(cells, ctxs)
    one = runner.run(Cell.from_dict(cells[0].to_dict()), ctxs[0])
    model = ctxs[0].cache["gpt2.model"][1]
    assert model.config.vocab_size == len(set("".join(TEXTS))) + 1
    assert all(len(o["losses"]) == 3 for o in outs)
    assert abs(one["losses"][0] - outs[0]["losses"][0]) < 1e-5 * one["losses"][0]
