import sys
from pathlib import Path

# tests import the shared procedural scenes as `scenes`
sys.path.append(str(Path(__file__).parent))
