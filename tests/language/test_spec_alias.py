"""archdsl.spec is the old name of archdsl.language: kept importable for one release."""


def test_old_module_names_are_the_new_modules():
    import archdsl.spec
    import archdsl.spec.errors
    import archdsl.spec.schema
    from archdsl.spec.templates import load_template

    assert archdsl.spec.load_spec is archdsl.language.load_spec
    assert archdsl.spec.schema is archdsl.language.schema
    assert archdsl.spec.errors.SpecError is archdsl.errors.SpecError is archdsl.SpecError
    assert load_template is archdsl.language.load_template
