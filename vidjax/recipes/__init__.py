"""Published training recipes as data, shared by the config files of one model family."""
