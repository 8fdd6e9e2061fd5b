"""FHIR XML for plugins: the format Java DSF peers and the MII plugins use for data sets.

``to_xml(resource)`` writes FHIR JSON (a dict) as UTF-8 FHIR XML; ``parse_xml(data)`` reads one
resource back into FHIR JSON (decimals as :class:`decimal.Decimal`, see
:mod:`dsf_core.fhir.xml`); both raise :class:`FhirXmlError` (a ``ValueError``) naming the element.
"""

from dsf_core.fhir.xml import FhirXmlError, parse_xml, to_xml

__all__ = ["FhirXmlError", "parse_xml", "to_xml"]
