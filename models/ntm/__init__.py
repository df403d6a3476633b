"""Neural Turing Machine: memory, addressing, heads, controllers and the NTM module."""

from models.ntm.ntm import NTM, NTMConfig, NTMState, NTMTrace

__all__ = ["NTM", "NTMConfig", "NTMState", "NTMTrace"]
