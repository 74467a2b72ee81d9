"""A Llama that really runs: GGUF -> tokenizer + NumPy forward pass, matching llama.cpp.

config      hyper-parameters from GGUF metadata (llama2.c's Config)
tokenizer   byte-level BPE from tokenizer.ggml.* (llama.cpp's pre-tokenizers)
weights     Linear (y = x @ Wᵀ over a QTensor or float32 W) and the weight tables
llama       rmsnorm, rope, attention (GQA + KV cache), SwiGLU, forward(tokens, pos)
model       load_model -> Model (logits, generate, with_weights)
sampling    greedy / temperature / top-k / top-p with a seed
perplexity  llama-perplexity's method
generate    streaming generation and the ChatML chat template
imatrix     llama-imatrix's importance matrix collection
text        default_text (pydoc topics corpus), llama.cpp's escape processing
"""
from .config import Config
from .llama import KVCache, Llama
from .model import Model, default_model_path, load_model
from .perplexity import PerplexityResult, perplexity
from .sampling import Sampler
from .text import default_text, process_escapes
from .tokenizer import Tokenizer

__all__ = ["Config", "KVCache", "Llama", "Model", "load_model", "default_model_path",
           "perplexity", "PerplexityResult", "Sampler", "Tokenizer", "default_text",
           "process_escapes"]
