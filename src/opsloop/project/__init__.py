"""Loading the user's project folder into typed objects; every error carries file:line."""

from .config import EndpointConfig, ProjectConfig, SignatureConfig
from .loader import Project, ProjectLoader, Section, load_project, read_project_config

# ``load_project`` here reads ``opsloop.yml`` and runs the loaders it is given; ``opsloop.load_project`` is the
# one with every subsystem's loader (the composition root's list in ``opsloop._subsystems``).
__all__ = ["EndpointConfig", "Project", "ProjectConfig", "ProjectLoader", "Section", "SignatureConfig", "load_project",
           "read_project_config"]
