from tinyasc.cli import main

raise SystemExit(main())
