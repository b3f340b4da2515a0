from cartsync.cli import main

raise SystemExit(main())
