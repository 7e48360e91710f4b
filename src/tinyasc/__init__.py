"""tinyasc: low-complexity, device-robust acoustic scene classification.

Implements BC-ResNet-ASC with Residual Normalization (Kim et al., DCASE 2021 Task 1A winner).
"""
from tinyasc.errors import TinyascError

__version__ = "0.1.0"
__all__ = ["TinyascError", "__version__"]
