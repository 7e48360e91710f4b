"""Model compression (paper §2.3, §3.3): magnitude pruning (`prune`), 8-bit quantization-aware training
with int8 + fp16 checkpoints (`quantize`), knowledge distillation (`distill`), and the `tinyasc compress`
pipeline that chains them on a trained teacher checkpoint (`pipeline`)."""
