from bayou.cli import main

raise SystemExit(main())
