"""Assertions shared by the loop command tests."""


def one_line_error(result, needle):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("cvaudit: error: ") and needle in lines[0], lines[0]
