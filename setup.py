"""Package setup, driven by settings.ini (the nbdev 2 convention)."""
from configparser import ConfigParser
import setuptools

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = ('version description keywords author author_email license status min_python '
            'git_url lib_name user').split()
missing = [o for o in expected if o not in cfg]
if missing: raise ValueError(f'settings.ini is missing: {missing}')

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
nwb_requirements = cfg.get('nwb_requirements', '').split()
docs_requirements = cfg.get('docs_requirements', '').split()
min_python = cfg['min_python']

setuptools.setup(
    name=cfg['lib_name'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1],
                 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: ' + min_python],
    url=cfg['git_url'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    project_urls={'Source': cfg['git_url'], 'Documentation': cfg['doc_host'] + cfg['doc_baseurl']},
    # the papermill report notebooks (nbs/_reports) ship inside the package, so an installed ephys2tx can
    # run `ephys2tx reproduce` without the source checkout
    packages=setuptools.find_packages(include=['ephys2tx', 'ephys2tx.*']) + ['ephys2tx.report_notebooks'],
    package_dir={'ephys2tx.report_notebooks': 'nbs/_reports'},
    package_data={'ephys2tx.report_notebooks': ['*.ipynb']},
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'nwb': nwb_requirements, 'docs': docs_requirements,
                    'all': dev_requirements + nwb_requirements + docs_requirements},
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f"{cfg.get('lib_path')}={cfg.get('lib_path')}._modidx:d"]},
    version=cfg['version'],
    description=cfg['description'],
    keywords=cfg['keywords'],
)
