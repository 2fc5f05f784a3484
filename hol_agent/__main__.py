from hol_agent.cli import main

raise SystemExit(main())
