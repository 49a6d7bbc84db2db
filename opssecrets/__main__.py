from opssecrets.cli import main

raise SystemExit(main())
