"""MII data transfer plugin: processes medizininformatik-initiativede_dataSend (DIC) and _dataReceive (DMS)."""
