"""Backend drivers, loaded lazily by URL scheme so importing taskstore imports no database driver."""
