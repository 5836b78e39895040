import sys

from scalingstudy_trainer.main import main

sys.exit(main())
