from approvalgate.cli import main

raise SystemExit(main())
