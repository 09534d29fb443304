"""Interoperability with the reference PyTorch project: import/export of its network weights."""
from jaxgan.interop.pytorch import convert_state_dict, load_pth, reference_layers, to_state_dict

__all__ = ["convert_state_dict", "load_pth", "reference_layers", "to_state_dict"]
