import sys

from translrec_dist.cli import main

sys.exit(main())
