"""Serving trained routers: restore a workdir's router once and route new prompts."""

from jaxroute.serving.router import TrainedRouter, load_router, read_prompts_file

__all__ = ["TrainedRouter", "load_router", "read_prompts_file"]
