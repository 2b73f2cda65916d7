if not config:
    configfile: "a.yaml"
print("CONFIG", config)
rule all:
    run:
        pass
