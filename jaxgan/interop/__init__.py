"""Interoperability with the reference PyTorch project: its network weights, imported workdirs, its released models.

* :mod:`~jaxgan.interop.pytorch`: state_dict <-> Flax variables, for every netG / netD / norm and CUT's networks;
* :mod:`~jaxgan.interop.layouts`: the reference networks' module layouts (which torch key is which Flax leaf);
* :mod:`~jaxgan.interop.pth`: reading ``.pth`` files safely (``weights_only``);
* :mod:`~jaxgan.interop.detect`: recognising the network (and its role) in a file;
* :mod:`~jaxgan.interop.workdir`: imported networks -> a jaxgan workdir (``jaxgan import-torch``);
* :mod:`~jaxgan.interop.zoo`: the authors' released models, their URLs, download with a cache.
"""
from jaxgan.interop.pth import load_pth, read_state_dict
from jaxgan.interop.pytorch import convert_state_dict, reference_layers, to_state_dict

__all__ = ["convert_state_dict", "load_pth", "read_state_dict", "reference_layers", "to_state_dict"]
