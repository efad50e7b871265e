"""hetero inside other libraries: :mod:`.transformers` (``attn_implementation="hetero"``)."""
