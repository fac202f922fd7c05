"""Recipes: YAML -> validated Recipe, with file:line:key errors."""

from __future__ import annotations

import textwrap

import pytest

from kni_core.config import (
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from kni_core.errors import ConfigError
from workbench.recipe import (
    MAX_SEEDS,
    Recipe,
    RecipeError,
    find_recipes,
    load_recipe,
    parse_recipe,
    parse_seeds,
)

VALID = """\
name: bc
description: Book-Crossing, paper settings
dataset:
  name: bc
model:
  attention: 1
  kg: true
  hop_n_sample: [1, 4]
  max_degree: 1024
  temperature: 10
train:
  l2: 1.0e-5
eval:
  n_eval: 40
seeds: [1, 2, 3, 4, 5]
device: auto
"""


def write(tmp_path, text: str, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text: str, name: str = "recipe.yaml", **kwargs) -> RecipeError:
    path = write(tmp_path, text, name)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, **kwargs)
    return info.value


def replace_line(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# -- valid recipes ------------------------------------------------------------------------------


def test_valid_recipe_fills_defaults(tmp_path):
    path = write(tmp_path, VALID)
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    assert recipe.name == "bc"
    assert recipe.path == str(path)
    assert recipe.text == VALID
    assert recipe.description == "Book-Crossing, paper settings"
    assert recipe.seeds == [1, 2, 3, 4, 5]
    assert recipe.device == "auto"
    base = recipe.base
    assert isinstance(base, RunConfig)
    assert base.seed == 1 and base.name == "bc" and base.device == "auto"
    assert base.dataset == DatasetConfig(name="bc")
    assert base.model == ModelConfig()  # every value given equals the default
    assert base.model.temperature == 10.0 and isinstance(base.model.temperature, float)
    assert base.train == TrainConfig(l2=1e-5)
    assert base.eval == EvalConfig(n_eval=40)
    # keys absent from the file take the dataclass defaults
    assert base.model.hidden == 128 and base.model.dropout == 0.5
    assert base.train.epochs == 100 and base.train.select_on == "valid"
    assert base.eval.batch_size == 1024


def test_config_for_gives_the_seed_and_leaves_base_alone(tmp_path):
    recipe = load_recipe(write(tmp_path, VALID))
    cfg = recipe.config_for(3)
    assert cfg.seed == 3
    assert recipe.base.seed == 1
    cfg.model.hop_n_sample.append(8)
    assert recipe.base.model.hop_n_sample == [1, 4]
    assert [c.seed for c in recipe.configs()] == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="seed: expected a value >= 0"):
        recipe.config_for(-1)


def test_config_hash_ignores_seed_but_not_model_values(tmp_path):
    recipe = load_recipe(write(tmp_path, VALID))
    assert recipe.config_for(1).config_hash() == recipe.config_for(2).config_hash()
    assert recipe.config_for(1).to_dict() != recipe.config_for(2).to_dict()
    other = load_recipe(write(tmp_path, replace_line(VALID, "temperature: 10", "temperature: 5"), "b.yaml"))
    assert other.base.config_hash() != recipe.base.config_hash()
    changed = parse_recipe(VALID, overrides=["model.hidden=64"])
    assert changed.base.config_hash() != recipe.base.config_hash()


def test_int_and_float_spellings_hash_alike():
    a = parse_recipe(VALID)
    b = parse_recipe(replace_line(VALID, "temperature: 10", "temperature: 10.0"))
    assert a.base.config_hash() == b.base.config_hash()


def test_minimal_recipe_defaults():
    recipe = parse_recipe("dataset:\n  path: some/folder\n")
    assert recipe.name == "run"
    assert recipe.path is None
    assert recipe.seeds == [1]
    assert recipe.device == "auto"
    assert recipe.description is None
    assert recipe.base.dataset.path == "some/folder" and recipe.base.dataset.name is None
    assert recipe.base.model == ModelConfig()


def test_name_defaults_to_file_stem(tmp_path):
    recipe = load_recipe(write(tmp_path, "dataset: {name: lastfm}\n", "lastfm-ni.yml"))
    assert recipe.name == "lastfm-ni"
    assert recipe.base.name == "lastfm-ni"


def test_plain_exponent_is_a_number():
    # YAML 1.1 reads 1e-5 (no dot) as a string; float fields accept it anyway
    recipe = parse_recipe("dataset: {name: bc}\ntrain:\n  l2: 1e-5\n  lr: 5E-4\n")
    assert recipe.base.train.l2 == 1e-5
    assert recipe.base.train.lr == 5e-4


def test_quoted_exponent_is_still_a_string(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\ntrain:\n  l2: '1e-5'\n")
    assert (e.line, e.key) == (3, "train.l2")
    assert "expected a number" in str(e)


def test_empty_section_takes_defaults():
    recipe = parse_recipe("dataset: {name: bc}\nmodel:\ntrain:\n")
    assert recipe.base.model == ModelConfig()
    assert recipe.base.train == TrainConfig()


def test_synthetic_mapping_and_split():
    recipe = parse_recipe(textwrap.dedent("""\
        dataset:
          name: synthetic
          split: [0.8, 0.1, 0.1]
          synthetic: {users: 50, items: 40}
        """))
    assert recipe.base.dataset.synthetic == {"users": 50, "items": 40}
    assert recipe.base.dataset.split == [0.8, 0.1, 0.1]


def test_to_dict():
    recipe = parse_recipe(VALID, "recipes/bc.yaml")
    d = recipe.to_dict()
    assert d["name"] == "bc" and d["path"] == "recipes/bc.yaml"
    assert d["seeds"] == [1, 2, 3, 4, 5] and d["device"] == "auto"
    assert d["config"] == recipe.base.to_dict()
    assert d["config_hash"] == recipe.base.config_hash()
    assert d["text"] == VALID


def test_string_seed_spec_in_yaml():
    recipe = parse_recipe(replace_line(VALID, "seeds: [1, 2, 3, 4, 5]", "seeds: 6..10"))
    assert recipe.seeds == [6, 7, 8, 9, 10]
    assert recipe.base.seed == 6
    recipe = parse_recipe(replace_line(VALID, "seeds: [1, 2, 3, 4, 5]", "seeds: 1..3,7"))
    assert recipe.seeds == [1, 2, 3, 7]
    recipe = parse_recipe(replace_line(VALID, "seeds: [1, 2, 3, 4, 5]", "seeds: [3, 1, 3]"))
    assert recipe.seeds == [3, 1]
    recipe = parse_recipe(replace_line(VALID, "seeds: [1, 2, 3, 4, 5]", "seeds: 4"))
    assert recipe.seeds == [4]


# -- errors in the file ---------------------------------------------------------------------------


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    e = error_of(tmp_path, replace_line(VALID, "temperature: 10", "temprature: 10"), "bc.yaml")
    path = str(tmp_path / "bc.yaml")
    assert str(e) == f"{path}:10: model.temprature: unknown key; did you mean 'temperature'?"
    assert (e.path, e.line, e.key) == (path, 10, "model.temprature")
    assert isinstance(e, ConfigError)


def test_unknown_key_without_close_match_lists_allowed(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\neval:\n  zzz: 3\n")
    assert (e.line, e.key) == (4, "eval.zzz")
    assert e.message == "unknown key; expected one of: n_eval, batch_size, topk, strata"


def test_unknown_top_level_key(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\nseed: 3\n")
    assert (e.line, e.key) == (2, "seed")
    assert e.message == "unknown key; did you mean 'seeds'?"


def test_wrong_type(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\nmodel:\n  kg: false\n  hidden: abc\n")
    assert (e.line, e.key) == (5, "model.hidden")
    assert str(e).startswith(f"{tmp_path / 'recipe.yaml'}:5: model.hidden: expected an integer")
    assert "'abc'" in str(e)


def test_float_where_int_expected(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\ntrain:\n  epochs: 2.5\n")
    assert (e.line, e.key) == (4, "train.epochs")
    assert "expected an integer" in e.message


def test_bool_where_int_expected(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\nmodel:\n  max_degree: true\n")
    assert (e.line, e.key) == (4, "model.max_degree")
    assert e.message == "expected an integer, got a boolean (True)"


def test_int_where_bool_expected(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\nmodel:\n  kg: 1\n")
    assert (e.line, e.key) == (4, "model.kg")
    assert "expected true or false" in e.message


@pytest.mark.parametrize("line, expected", [
    ("dropout: 1.5", "expected a value <= 0.999; got 1.5"),
    ("temperature: 0", "expected a value >= 0.0001; got 0"),
    ("temperature: 1e-300", "expected a value >= 0.0001; got 1e-300"),    # 0 in float32: NaN scores
    ("max_degree: 0", "expected a value >= 1; got 0"),
    ("max_degree: 100000000000", "expected a value <= 16384; got 100000000000"),   # a 931 GiB table
    ("hidden: 1000000000", "expected a value <= 8192; got 1000000000"),
    ("hop_n_sample: [1, 100000]", "expected at most 4096 neighbours per hop; got [1, 100000]"),
    ("attention: 3", "expected one of 1, 2; got 3"),
    ("activation: gelu", "expected one of relu, tanh, selu, identity; got 'gelu'"),
    ("temperature: .nan", "expected a finite number, got nan"),
])
def test_out_of_range(tmp_path, line, expected):
    e = error_of(tmp_path, f"name: x\ndataset:\n  name: bc\nmodel:\n  kg: true\n  {line}\n")
    assert e.line == 6
    assert e.key == "model." + line.split(":")[0]
    assert e.message == expected


def test_bool_inside_list(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\nmodel:\n  hop_n_sample:\n    - 1\n    - true\n")
    assert (e.line, e.key) == (6, "model.hop_n_sample")
    assert "boolean" in e.message


def test_hop_n_sample_must_start_with_1(tmp_path):
    e = error_of(tmp_path, replace_line(VALID, "hop_n_sample: [1, 4]", "hop_n_sample: [2, 4]"))
    assert (e.line, e.key) == (8, "model.hop_n_sample")
    assert "starting with 1" in e.message


def test_hop_n_sample_needs_a_hop(tmp_path):
    e = error_of(tmp_path, replace_line(VALID, "hop_n_sample: [1, 4]", "hop_n_sample: [1]"))
    assert (e.line, e.key) == (8, "model.hop_n_sample")
    assert "at least one hop" in e.message


def test_split_cross_check_points_at_the_key(tmp_path):
    e = error_of(tmp_path, "name: s\ndataset:\n  name: bc\n  split: [0.5, 0.2, 0.2]\n")
    assert (e.line, e.key) == (4, "dataset.split")
    assert "summing to 1" in e.message


def test_dataset_needs_name_or_path(tmp_path):
    e = error_of(tmp_path, "name: x\ndataset:\n  format: auto\n")
    assert (e.line, e.key) == (2, "dataset")
    assert "give `name`" in e.message
    e = error_of(tmp_path, "name: x\nmodel:\n  kg: false\n", "nodataset.yaml")
    assert e.path == str(tmp_path / "nodataset.yaml")
    assert (e.line, e.key) == (None, "dataset")
    assert str(e).startswith(f"{tmp_path / 'nodataset.yaml'}: dataset: give `name`")


def test_bad_device_line(tmp_path):
    e = error_of(tmp_path, replace_line(VALID, "device: auto", "device: gpu"))
    assert (e.line, e.key) == (16, "device")
    assert "expected auto, cpu, cuda or cuda:N" in e.message


def test_yaml_syntax_error(tmp_path):
    e = error_of(tmp_path, "name: x\ndataset:\n  name: bc\nmodel:\n  hop_n_sample: [1, 4\n  kg: true\n")
    assert e.line == 6
    assert e.key is None
    assert str(e).startswith(f"{tmp_path / 'recipe.yaml'}:6: invalid YAML: ")
    assert "expected ',' or ']'" in e.message


def test_tab_indentation_is_a_syntax_error(tmp_path):
    e = error_of(tmp_path, "dataset:\n\tname: bc\n")
    assert e.line == 2
    assert "'\\t'" in e.message


def test_duplicate_key(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\nmodel:\n  hidden: 8\n  kg: true\n  hidden: 16\n")
    assert (e.line, e.key) == (6, "model.hidden")
    assert e.message == "duplicate key (first given on line 4)"


def test_duplicate_section(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\nmodel: {}\nmodel: {}\n")
    assert (e.line, e.key) == (4, "model")
    assert e.message == "duplicate key (first given on line 3)"


def test_duplicate_key_inside_a_mapping_value(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: synthetic\n  synthetic:\n    n: 1\n    n: 2\n")
    assert (e.line, e.key) == (5, "dataset.synthetic.n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    e = error_of(tmp_path, text)
    assert e.line is None and e.key is None
    assert str(e).startswith(f"{tmp_path / 'recipe.yaml'}: the recipe is empty")


def test_top_level_not_a_mapping(tmp_path):
    e = error_of(tmp_path, "# header\n- dataset\n- model\n")
    assert e.line == 2
    assert "expected a mapping" in e.message and "got a list" in e.message


def test_section_not_a_mapping(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: bc\ntrain: [1, 2]\n")
    assert (e.line, e.key) == (3, "train")
    assert e.message.startswith("expected a mapping of train settings") and e.message.endswith("got a list")


def test_multiple_documents(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\n---\nmodel: {}\n")
    assert e.line == 2
    assert "single document" in e.message


def test_unsafe_tag_is_refused(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\nname: !!python/object/apply:os.getcwd []\n")
    assert (e.line, e.key) == (2, "name")
    assert "could not determine a constructor" in e.message


@pytest.mark.parametrize("value, expected", [
    ("[1, -2]", "expected non-negative integers, got -2 at position 2"),
    ("[]", "expected at least one seed"),
    ("[1, true]", "expected non-negative integers, got True at position 2"),
    ("5..1", "reversed range '5..1'; write it as '1..5'"),
    ("true", "expected a list of non-negative integers or a range such as '1..5', got a boolean (True)"),
])
def test_bad_seeds_in_yaml(tmp_path, value, expected):
    e = error_of(tmp_path, f"dataset: {{name: bc}}\n\nseeds: {value}\n")
    assert (e.line, e.key) == (3, "seeds")
    assert e.message == expected


def test_bad_seed_in_block_list_points_at_the_item(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\nseeds:\n  - 1\n  - x\n")
    assert (e.line, e.key) == (4, "seeds")


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


# -- overrides ---------------------------------------------------------------------------------


def test_overrides_parse_types():
    recipe = parse_recipe(VALID, overrides=[
        "dataset.path=/x", "model.kg=false", "model.hop_n_sample=[1,8]", "train.epochs=3",
        "train.lr=1e-2", "model.dropout=0.1", "model.activation = tanh", "name=bc-ni",
        "seeds=1..2", "device=cpu", "description=quick try"])
    base = recipe.base
    assert base.dataset.path == "/x" and base.dataset.name == "bc"  # both kept
    assert base.model.kg is False
    assert base.model.hop_n_sample == [1, 8]
    assert base.train.epochs == 3 and isinstance(base.train.epochs, int)
    assert base.train.lr == 0.01
    assert base.model.dropout == 0.1
    assert base.model.activation == "tanh"
    assert recipe.name == "bc-ni" and base.name == "bc-ni"
    assert recipe.seeds == [1, 2]
    assert recipe.device == "cpu" and base.device == "cpu"
    assert recipe.description == "quick try"


def test_later_override_wins():
    recipe = parse_recipe(VALID, overrides=["train.epochs=3", "train.epochs=7"])
    assert recipe.base.train.epochs == 7


def test_override_on_load_recipe(tmp_path):
    recipe = load_recipe(write(tmp_path, VALID), overrides=["eval.n_eval=5"])
    assert recipe.base.eval.n_eval == 5


SYNTHETIC = "name: s\ndataset: {name: synthetic, synthetic: {preset: tiny}}\n"


def test_an_entry_of_the_generators_parameters_is_set_and_swept_like_a_key():
    """``dataset.synthetic`` is a mapping of the generator's parameters: ``--set`` and a sweep
    of one of its entries were refused ("no section 'dataset.synthetic'")."""
    recipe = parse_recipe(SYNTHETIC, "s.yaml", overrides=["dataset.synthetic.users=500"])
    assert recipe.base.dataset.synthetic == {"preset": "tiny", "users": 500}
    bare = parse_recipe("name: s\ndataset: {name: synthetic}\n", overrides=["dataset.synthetic.users=50"])
    assert bare.base.dataset.synthetic == {"users": 50}
    for override, message in (("dataset.synthetic.users=-3", "expected a value from 1 to 10,000,000; got -3"),
                              ("dataset.synthetic.userz=5", "unknown key; did you mean 'users'?")):
        with pytest.raises(RecipeError) as info:
            parse_recipe(SYNTHETIC, "s.yaml", overrides=[override])
        assert str(info.value) == f"--set {override}: {message}"
    swept = parse_recipe(SYNTHETIC + "sweep:\n  grid:\n    dataset.synthetic.users: [50, 70]\n", "s.yaml")
    assert [c.dataset.synthetic for c in (swept.config_for_point(p, 1) for p in swept.sweep.points())] == [
        {"preset": "tiny", "users": 50}, {"preset": "tiny", "users": 70}]
    assert swept.base.dataset.synthetic == {"preset": "tiny"}
    with pytest.raises(RecipeError) as info:
        parse_recipe(SYNTHETIC + "sweep:\n  grid:\n    dataset.synthetic.users: [50, -1]\n", "s.yaml")
    assert str(info.value) == "s.yaml:5: sweep.grid.dataset.synthetic.users: expected a value from 1 to 10,000,000; got -1"


@pytest.mark.parametrize("override, message", [
    ("model.temprature=3", "--set model.temprature=3: unknown key; did you mean 'temperature'?"),
    ("modle.kg=false", "--set modle.kg=false: unknown section 'modle'; did you mean 'model'?"),
    ("model.hidden=abc", "--set model.hidden=abc: expected an integer, got str ('abc')"),
    ("model.kg=1", "--set model.kg=1: expected true or false, got int (1)"),
    ("model.dropout=1.5", "--set model.dropout=1.5: expected a value <= 0.999; got 1.5"),
    ("model.hop_n_sample=[2,4]", "--set model.hop_n_sample=[2,4]: expected a list of positive "
                                 "integers starting with 1 (the centre node), e.g. [1, 4]; got [2, 4]"),
    ("seeds=3..1", "--set seeds=3..1: reversed range '3..1'; write it as '1..3'"),
    ("device=tpu", "--set device=tpu: expected auto, cpu, cuda or cuda:N; got 'tpu'"),
    # an integer no database column holds: said, not an OverflowError traceback when it is stored
    ("train.epochs=99999999999999999999999", "--set train.epochs=99999999999999999999999: expected a value <= "
                                              "2147483647; got 99999999999999999999999"),
    ("train.patience=3000000000", "--set train.patience=3000000000: expected a value <= 2147483647; got 3000000000"),
])
def test_override_errors(override, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(VALID, "bc.yaml", overrides=[override])
    assert str(info.value) == message
    assert info.value.origin == f"--set {override}"
    assert info.value.line is None


@pytest.mark.parametrize("override", ["model.kg", "kg=false", "model=3", "=3"])
def test_malformed_override(override):
    with pytest.raises(RecipeError) as info:
        parse_recipe(VALID, overrides=[override])
    assert str(info.value).startswith(f"--set {override}: expected SECTION.KEY=VALUE")


def test_override_with_bad_yaml_value():
    with pytest.raises(RecipeError) as info:
        parse_recipe(VALID, overrides=["model.hop_n_sample=[1,8"])
    assert str(info.value).startswith("--set model.hop_n_sample=[1,8: invalid YAML value: ")


def test_override_fixes_a_file_error():
    # the file alone is invalid (no dataset); the override completes it
    recipe = parse_recipe("name: x\n", overrides=["dataset.name=bc"])
    assert recipe.base.dataset.name == "bc"


def test_seeds_and_device_arguments():
    recipe = parse_recipe(VALID, seeds="1..3, 9", device="cuda:1")
    assert recipe.seeds == [1, 2, 3, 9] and recipe.device == "cuda:1"
    assert recipe.base.seed == 1 and recipe.base.device == "cuda:1"
    assert parse_recipe(VALID, seeds=[7, 8]).seeds == [7, 8]
    # the arguments win over --set
    assert parse_recipe(VALID, overrides=["seeds=4"], seeds="5").seeds == [5]
    with pytest.raises(RecipeError) as info:
        parse_recipe(VALID, seeds="2..x")
    assert str(info.value).startswith("--seeds 2..x: cannot read '2..x'")
    with pytest.raises(RecipeError) as info:
        parse_recipe(VALID, seeds=[1, -1])
    assert str(info.value) == "--seeds 1,-1: expected non-negative integers, got -1 at position 2"
    with pytest.raises(RecipeError) as info:
        parse_recipe(VALID, device="gpu0")
    assert str(info.value) == "--device gpu0: expected auto, cpu, cuda or cuda:N; got 'gpu0'"


# -- parse_seeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, seeds", [
    ("1,2,3", [1, 2, 3]),
    ("1..5", [1, 2, 3, 4, 5]),
    ("6..10", [6, 7, 8, 9, 10]),
    ("1..3,7", [1, 2, 3, 7]),
    (" 1 .. 3 , 7 ", [1, 2, 3, 7]),
    ("0", [0]),
    ("4..4", [4]),
    ("3,1,3,2..4", [3, 1, 2, 4]),
])
def test_parse_seeds(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize("spec, fragment", [
    ("5..1", "reversed range '5..1'"),
    ("-1", "negative seed -1"),
    ("1,-2..3", "negative seed in '-2..3'"),
    ("", "no seeds given"),
    ("  ", "no seeds given"),
    ("1,,2", "empty item"),
    ("1,", "empty item"),
    ("a", "cannot read 'a'"),
    ("1...3", "cannot read '1...3'"),
    ("1-3", "cannot read '1-3'"),
    ("1.5", "cannot read '1.5'"),
    (f"0..{MAX_SEEDS}", f"more than {MAX_SEEDS}"),
])
def test_parse_seeds_errors(spec, fragment):
    with pytest.raises(ConfigError) as info:
        parse_seeds(spec)
    assert str(info.value).startswith("seeds: ")
    assert fragment in str(info.value)


# -- find_recipes ------------------------------------------------------------------------------


def test_find_recipes(tmp_path):
    for name in ["b.yml", "a.yaml", "c.txt", ".hidden.yaml", "C.YAML"]:
        (tmp_path / name).write_text("dataset: {name: bc}\n")
    (tmp_path / "sub.yaml").mkdir()
    assert [p.name for p in find_recipes(tmp_path)] == ["C.YAML", "a.yaml", "b.yml"]
    assert find_recipes(str(tmp_path))[0] == tmp_path / "C.YAML"
    with pytest.raises(RecipeError, match="not a folder"):
        find_recipes(tmp_path / "missing")


# -- every mistake at once ------------------------------------------------------------------------


def test_every_mistake_is_reported_with_its_line(tmp_path):
    e = error_of(tmp_path, textwrap.dedent("""\
        name: x
        dataset:
          name: bc
          split: [0.5, 0.2, 0.2]
        model:
          temprature: 3
          hidden: abc
        train: {epochs: 0}
        seed: 3
        """), "two.yaml")
    path = str(tmp_path / "two.yaml")
    assert [(x.line, x.key) for x in e.errors] == [(4, "dataset.split"), (6, "model.temprature"),
                                                   (7, "model.hidden"), (8, "train.epochs"), (9, "seed")]
    assert str(e).splitlines() == [str(x) for x in e.errors]
    assert str(e).splitlines()[1] == f"{path}:6: model.temprature: unknown key; did you mean 'temperature'?"
    assert all(x.path == path and isinstance(x, RecipeError) for x in e.errors)
    # the error itself carries the first mistake, as a single error does
    assert (e.path, e.line, e.key) == (path, 4, "dataset.split") and "summing to 1" in e.message


def test_one_mistake_is_not_reported_twice(tmp_path):
    # a bad dataset.name leaves no name: "give `name` or `path`" would repeat the same mistake
    e = error_of(tmp_path, "dataset:\n  name: 5\nmodel:\n  hop_n_sample: [1, true]\n")
    assert [(x.line, x.key) for x in e.errors] == [(2, "dataset.name"), (4, "model.hop_n_sample")]
    e = error_of(tmp_path, "dataset: 3\n")
    assert [(x.line, x.key) for x in e.errors] == [(1, "dataset")]


def test_duplicate_keys_and_bad_sections_do_not_hide_later_mistakes(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\nmodel: {hidden: 8, hidden: 9}\ntrain: 3\neval: {n_eval: 0}\n")
    assert [(x.line, x.key) for x in e.errors] == [(2, "model.hidden"), (3, "train"), (4, "eval.n_eval")]


def test_a_huge_value_is_quoted_in_part():
    """A recipe that is one 5,000-character scalar, and a 3,000-character --set: their errors
    quote the start and count the rest (they echoed every character)."""
    with pytest.raises(RecipeError) as info:
        parse_recipe("a" * 5000 + "\n", "big.yaml")
    assert len(str(info.value)) < 300 and "a single value (aaaa" in str(info.value)
    assert str(info.value).endswith("... (5,000 characters))")
    with pytest.raises(RecipeError) as info:
        parse_recipe("dataset: {name: bc}\n", "r.yaml", overrides=["train.epochs=" + "9" * 3000])
    assert str(info.value).startswith("--set train.epochs=999") and "... (3,013 characters): expected" in \
        str(info.value)


def test_override_mistakes_join_the_file_mistakes_and_a_good_override_fixes_one():
    text = "dataset: {name: bc}\nmodel: {hidden: abc, dropout: 2}\n"
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "r.yaml", overrides=["model.kg=1"])
    assert [(x.line, x.key, x.origin) for x in info.value.errors] == [
        (2, "model.hidden", None), (2, "model.dropout", None), (None, "model.kg", "--set model.kg=1")]
    recipe = parse_recipe(text, "r.yaml", overrides=["model.hidden=16", "model.dropout=0.1"])
    assert recipe.base.model.hidden == 16 and recipe.base.model.dropout == 0.1
    # a top-level key spelt as a dotted one is still unknown when --set gives that dotted key
    with pytest.raises(RecipeError) as info:
        parse_recipe("dataset: {name: bc}\ntrain.epochs: 30\n", "r.yaml", overrides=["train.epochs=1"])
    assert str(info.value).startswith("r.yaml:2: train.epochs: unknown key")


@pytest.mark.parametrize("value, line, key, message", [
    ("{users: -5}", 4, "users", "expected a value from 1 to 10,000,000; got -5"),
    ("{users: many}", 4, "users", "expected an integer, got str ('many')"),
    ("{users: 10.5}", 4, "users", "expected an integer, got float (10.5)"),
    ("{topics: 0}", 4, "topics", "expected a value from 1 to 1,000,000; got 0"),
    ("{preset: huge}", 4, "preset", "expected one of tiny, small, ml-20m; got 'huge'"),
    ("{userz: 3}", 4, "userz", "unknown key; did you mean 'users'?"),
    ("\n    preset: tiny\n    on_topic: 1.5", 6, "on_topic", "expected a value from 0 to 1; got 1.5"),
    ("{users: 10000000, positives_per_user: 100000}", 4, None,
     "users x positives_per_user = 1,000,000,000,000 is more than 100,000,000"),
])
def test_synthetic_parameters_are_checked_at_their_line(tmp_path, value, line, key, message):
    e = error_of(tmp_path, f"name: s\ndataset:\n  name: synthetic\n  synthetic: {value}\n")
    assert len(e.errors) == 1
    assert e.line == line and e.key == "dataset.synthetic" + (f".{key}" if key else "")
    assert e.message == message


def test_several_synthetic_mistakes(tmp_path):
    e = error_of(tmp_path, "dataset:\n  name: synthetic\n  synthetic:\n    users: -5\n    topics: 0\n")
    assert [(x.line, x.key) for x in e.errors] == [(4, "dataset.synthetic.users"), (5, "dataset.synthetic.topics")]


def test_library_validate_lists_every_problem():
    cfg = RunConfig(dataset=DatasetConfig(name="synthetic", synthetic={"users": -5}),
                    model=ModelConfig(hidden=0, temperature=1e-300))
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert [str(x).split(":")[0] for x in info.value.errors] == ["model.hidden", "model.temperature",
                                                                 "dataset.synthetic.users"]
    assert str(info.value).count("\n") == 2


def test_seed_beyond_64_bits(tmp_path):
    e = error_of(tmp_path, "dataset: {name: bc}\nseeds: [1, 99999999999999999999]\n")
    assert (e.line, e.key) == (2, "seeds") and "up to 9223372036854775807" in e.message
    with pytest.raises(ConfigError, match="above the largest seed"):
        parse_seeds("1..99999999999999999999")
