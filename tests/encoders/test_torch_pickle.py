"""`pytorch_model.bin` without torch: both formats read exactly; code-running pickles refused."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xtune.encoders.adapter import EncoderLoadError
from xtune.encoders.hf_weights import read_hf_weights, strip_prefix
from xtune.encoders.torch_pickle import (
    LEGACY_MAGIC_NUMBER,
    UnsafeWeightsError,
    WeightsFormatError,
    read_torch_state_dict,
)

ZOO = Path(__file__).parent.parent / "fixtures" / "hf_tiny" / "torch_pickle"


def system_call_pickle(command: str, protocol: int) -> bytes:
    """A pickle that calls `os.system(command)` when loaded, written opcode by opcode."""
    if protocol == 0:  # GLOBAL 'os system', MARK, STRING, TUPLE, REDUCE, STOP
        return b"cos\nsystem\n(V" + command.encode() + b"\ntR."
    # protocol 4: STACK_GLOBAL, the form `pickle.dumps` writes today
    frames = b"\x8c\x02os\x94\x8c\x06system\x94\x93\x94"
    argument = command.encode()
    frames += b"\x8c" + bytes([len(argument)]) + argument + b"\x94\x85\x94R\x94."
    return b"\x80\x04" + frames


def zip_like_torch(path: Path, data_pkl: bytes) -> None:
    """The layout `torch.save` writes: `<name>/data.pkl`, `<name>/version`, `<name>/data/*`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("pytorch_model/data.pkl", data_pkl)
        archive.writestr("pytorch_model/byteorder", "little")
        archive.writestr("pytorch_model/data/0", np.zeros(4, np.float32).tobytes())
        archive.writestr("pytorch_model/version", "3\n")


@pytest.mark.parametrize("protocol", [0, 4])
def test_a_bin_that_calls_os_system_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = system_call_pickle(f"touch {marker}", protocol)
    # the payload is live: plain pickle would run it (checked on a copy of the command)
    witness = tmp_path / "witness"
    pickle.loads(system_call_pickle(f"touch {witness}", protocol))
    assert witness.exists()

    weights = tmp_path / "pytorch_model.bin"
    zip_like_torch(weights, payload)
    with pytest.raises(UnsafeWeightsError) as error:
        read_torch_state_dict(weights)
    message = str(error.value)
    assert str(weights) in message
    assert "refuses to load: it calls os.system" in message
    assert "only tensors" in message
    assert not marker.exists()

    # also through the Hugging Face folder reader (no safetensors beside it)
    with pytest.raises(UnsafeWeightsError, match="os.system"):
        read_hf_weights(tmp_path)
    assert not marker.exists()


def test_a_legacy_format_bin_that_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    header = pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2) + pickle.dumps(1001, protocol=2)
    header += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(header + system_call_pickle(f"touch {marker}", 0))
    with pytest.raises(UnsafeWeightsError, match="it calls os.system"):
        read_torch_state_dict(weights)
    assert not marker.exists()


def test_a_global_hidden_inside_a_tensor_rebuild_is_refused(tmp_path):
    # a legitimate-looking rebuild whose argument list smuggles `builtins.eval`
    data = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\n"
    data += b"(cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85Rtq\x02Rs."
    weights = tmp_path / "pytorch_model.bin"
    zip_like_torch(weights, data)
    with pytest.raises(UnsafeWeightsError, match=r"it calls builtins\.eval"):
        read_torch_state_dict(weights)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(b"not a pickle at all")
    with pytest.raises(WeightsFormatError, match="not a"):
        read_torch_state_dict(weights)
    with pytest.raises(EncoderLoadError, match="no weights file"):
        read_hf_weights(tmp_path / "empty")


# numpy has no such dtype: expected.npz holds them as float32
CAST_IN_EXPECTED = {"bfloat16", "float8_e4m3fn"}


@pytest.mark.parametrize("name", ["zip.bin", "legacy.bin"])
def test_both_torch_formats_read_every_dtype_and_layout_exactly(name):
    """Saved by tools/make_tiny_hf_models.py with torch: views of a shared storage, a
    transpose, bf16, fp8 (zip only), bool, a scalar, an empty tensor, a Parameter."""
    with np.load(ZOO / "expected.npz") as data:
        expected = {key: data[key] for key in data.files}
    weights = read_torch_state_dict(ZOO / name)
    if name == "legacy.bin":
        expected.pop("float8_e4m3fn")
    assert list(weights) == list(expected)
    for key, value in expected.items():
        dtype = key if key in CAST_IN_EXPECTED else value.dtype.name
        assert (weights[key].dtype.name, weights[key].shape) == (dtype, value.shape), key
        np.testing.assert_array_equal(weights[key].astype(value.dtype), value, err_msg=key)
        assert weights[key].flags.c_contiguous and weights[key].flags.writeable


def test_the_legacy_format_reads_the_same_weights_as_the_zip_format():
    """A whole DistilBERT state dict saved the torch < 1.6 way, as many Chinese checkpoints
    still ship, equals the zip-format .bin of the same model."""
    legacy = read_torch_state_dict(ZOO / "distilbert_legacy.bin")
    current = read_torch_state_dict(ZOO.parent / "distilbert" / "pytorch_model.bin")
    assert list(legacy) == list(current)
    for key, value in current.items():
        np.testing.assert_array_equal(legacy[key], value, err_msg=key)


def test_strip_prefix_keeps_only_the_base_model():
    weights = {"roberta.encoder.w": np.ones(1), "lm_head.bias": np.ones(1)}
    assert list(strip_prefix(weights, "roberta")) == ["encoder.w"]
    assert list(strip_prefix({"encoder.w": np.ones(1)}, "roberta")) == ["encoder.w"]


def test_sharded_checkpoints_and_old_layer_norm_names(tmp_path):
    """`*.index.json` + shards read as one state dict; `LayerNorm.gamma/beta` renamed."""
    from safetensors.numpy import save_file

    weights = read_torch_state_dict(ZOO.parent / "distilbert" / "pytorch_model.bin")
    names = sorted(weights)
    shards = {"part-1.safetensors": names[::2], "part-2.safetensors": names[1::2]}
    for shard, keys in shards.items():
        renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma"): weights[k] for k in keys}
        save_file(renamed, str(tmp_path / shard))
    weight_map = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma"): shard
        for shard, keys in shards.items()
        for k in keys
    }
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    read = read_hf_weights(tmp_path)
    assert sorted(read) == names
    for key in names:
        np.testing.assert_array_equal(read[key], weights[key])
    (tmp_path / "part-2.safetensors").unlink()
    with pytest.raises(EncoderLoadError, match="shard 'part-2.safetensors' is missing"):
        read_hf_weights(tmp_path)
