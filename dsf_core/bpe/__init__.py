"""The business process engine.

The BPMN adapter over SpiffWorkflow 3.2 (DESIGN.md §3 "BPMN"):

* ``parser`` — ``load_bpmn``/``parse_bpmn``: a BPMN file drawn for the Java DSF → ``model.ProcessModel``
  (SpiffWorkflow specs), after ``subset`` rejected everything outside the DSF element subset;
* ``specs``, ``events``, ``bindings`` — the spec classes, event definitions and the Camunda
  bindings (``camunda:class``, fields, listeners, parameters, job flags) they carry;
* ``scripting`` — the script engine: JUEL instead of Python, the activity host, the clock;
* ``expressions`` — the JUEL subset; ``timers`` — ISO-8601 timer values;
* ``serializer`` — SpiffWorkflow serializer converters for all of the above.
"""
