"""``python -m sculpt.demoapp --host H --port P --data-dir D [--instance-id ID]``: run the demo app."""

from sculpt.demoapp.server import main

raise SystemExit(main())
