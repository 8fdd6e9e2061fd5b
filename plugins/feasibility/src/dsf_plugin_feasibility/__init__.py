"""MII feasibility plugin: processes medizininformatik-initiativede_feasibilityRequest (HRP) and _feasibilityExecute (DIC)."""
