"""Files: GGUF (read memory-mapped, write atomically), safetensors, importance matrices."""
