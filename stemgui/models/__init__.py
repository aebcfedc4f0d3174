"""Generator and discriminator networks, model files (safetensors + JSON card) and the model registry."""
