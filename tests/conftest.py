import os
import sys

# Let tests import the repo's configs/ folder as a package-less module path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
