"""Weights as files: released checkpoints as data (specs), reading and writing them (serialization,
the metadata schema), the other libraries' key layouts (convert), and loading a state dict into a
module (loading). Nothing here builds a model: the model factory builds, then loads through here."""

from .loading import CheckpointMismatchError, load_backbone_weights, load_pretrained, load_state_dict_checked
from .serialization import CheckpointError, WeightsMeta, read_state_dict, read_weights_meta, write_weights
from .specs import WEIGHTS, WeightSpec, cache_dir, list_weights, resolve_weights

__all__ = [
    "WEIGHTS",
    "CheckpointError",
    "CheckpointMismatchError",
    "WeightSpec",
    "WeightsMeta",
    "cache_dir",
    "list_weights",
    "load_backbone_weights",
    "load_pretrained",
    "load_state_dict_checked",
    "read_state_dict",
    "read_weights_meta",
    "resolve_weights",
    "write_weights",
]
