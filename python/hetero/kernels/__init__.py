"""Kernels written in a portable kernel language (framework-free of any one backend's
binding): see ``triton/``."""
