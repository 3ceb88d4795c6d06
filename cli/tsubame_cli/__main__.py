from tsubame_cli.main import main

raise SystemExit(main())
