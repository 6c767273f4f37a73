"""Real vLLM deployments: servers, services, the proxy, and the pool that owns them."""
from .pool import Deployment, DeploymentConfig, DeploymentError, DeploymentPool
from .server import ServerHandle, ServerStartError

__all__ = ["Deployment", "DeploymentConfig", "DeploymentError", "DeploymentPool", "ServerHandle", "ServerStartError"]
