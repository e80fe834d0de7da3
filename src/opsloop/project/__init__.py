"""Loading the user's project folder into typed objects; every error carries file:line."""

from .config import EndpointConfig, ProjectConfig, SignatureConfig
from .loader import Project, load_project, register_loader

__all__ = ["EndpointConfig", "Project", "ProjectConfig", "SignatureConfig", "load_project", "register_loader"]
