"""Shared test settings: small thread count so the suite behaves on 2-core CI machines."""
import torch

torch.set_num_threads(2)
