"""berthspawner: JupyterHub's single-user servers run through berth (see spawner.py)."""
from .berth import BerthError, BerthProblem, BerthUnreachable
from .spawner import BerthSpawner

__all__ = ['BerthSpawner', 'BerthError', 'BerthProblem', 'BerthUnreachable']
__version__ = '0.1.0'
