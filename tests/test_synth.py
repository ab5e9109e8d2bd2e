def test_fixtures(synth_n0208, synth_n0509):
    assert synth_n0208.safe_path.exists() and synth_n0509.safe_path.name.split("_")[3] == "N0509"
