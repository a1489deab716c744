"""Discover v1 and v2 Azure Functions Python apps and invoke their functions."""
from .discovery import load_app
from .model import AppLoadError, Binding, FunctionInfo, LoadError, LoadedApp

__all__ = ["load_app", "AppLoadError", "Binding", "FunctionInfo", "LoadError", "LoadedApp"]
